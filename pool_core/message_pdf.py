"""A readable copy of an Outlook .msg attachment: its headers and body as a PDF.

Buyers attach approvals saved from Outlook; auditors open PDFs. The .msg is always kept
as it arrived; when the optional `extract-msg` package can read it, its sender, date,
subject and plain-text body are printed by the worker's own browser into
`<name>.msg.pdf` beside it. Only escaped text reaches the page: nothing in a message
(HTML, images, links) is loaded or run.
"""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 200_000  # a PDF of a few dozen pages; longer bodies are cut, and say so
_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{subject}</title>
<style>body{{font:12px sans-serif;margin:0}} table{{margin-bottom:1em}}
th{{text-align:left;padding-right:1em;vertical-align:top}}
pre{{white-space:pre-wrap;font:12px monospace}}</style></head><body>
<table>{rows}</table><pre>{body}</pre></body></html>"""


def message_text(path: Path) -> dict[str, str] | None:
    """Sender, date, subject and body of a .msg, or None when it cannot be read here."""
    try:
        import extract_msg
    except ImportError:
        return None  # optional: without it the .msg alone is kept
    try:
        message: Any = extract_msg.openMsg(str(path))  # a Message for an e-mail
    except Exception as exc:  # the library raises many kinds on a malformed file
        log.info("%s is not a readable Outlook message: %s", path.name, exc)
        return None
    try:
        body = str(message.body or "")
        return {"From": str(message.sender or ""), "To": str(message.to or ""),
                "Date": str(message.date or ""), "Subject": str(message.subject or ""),
                "body": body}
    except Exception as exc:
        log.info("reading %s failed: %s", path.name, exc)
        return None
    finally:
        message.close()


def save_message_pdf(page: Page, path: Path, target: Path) -> bool:
    """Print the message at `path` into `target`; False when it cannot be read or printed."""
    text = message_text(path)
    if text is None:
        return False
    body = text.pop("body")
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + "\n[… cut: the full message is in the .msg file]"
    rows = "".join(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>"
                   for key, value in text.items() if value)
    html = _PAGE.format(subject=escape(text["Subject"]), rows=rows, body=escape(body))
    try:
        page.set_content(html, wait_until="load")
        target.write_bytes(page.pdf())
    except PlaywrightError as exc:
        log.warning("no PDF of %s: %s", path.name, exc)
        return False
    return True
