"""What the runners share: their command line, the batch file, file names, the report,
and what a user learns about the coupa page shape by looking at it.

On a coupa page (as on a real Coupa PO page) a user's script has to:
  - wait for the comments, which a script renders well after `load`;
  - download each comment's file link (`target=_blank`; PDFs are served inline, so
    clicking one would only show it): fetched with the context's request client, which
    sends the browser's session cookie, and saved under the server's file name;
  - click each header attachment (a span without href whose script downloads the file
    in the same tab or through a new window) with the floating button bar hidden, as it
    covers the end of the page where the spans are;
  - follow the requisition link when the PO page itself has no files;
  - print the PO page to PDF.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pool_core.browser import launch_args

PAGE_PDF = "_page.pdf"
SHAPES = ("coupa", "simple")
# The simple shape: every file is a plain link on the PO page.
ATTACHMENT_SELECTOR = "a[href*='attachment']"
# The coupa shape, as a user reads it off the page.
COMMENTS_RENDERED = "#s-mountCommentsApp .commentsSection"
COMMENT_LINKS = "#s-mountCommentsApp li.attachmentFile a[href]"
HEADER_SPANS = "span[role=button][aria-label*='file attachment']"
REQUISITION_LINK = "a#order_header_requisition_header"
# The fixed button bar over the bottom of the viewport (PO and requisition pages): it
# takes the clicks meant for the header attachments below it.
HIDE_BAR_CSS = ("#order_header_show_buttons, #requisition_header_show_buttons "
                "{ display: none !important; }")
# Every Playwright call gets a timeout, so a hung page fails instead of stalling a run.
STEP_TIMEOUT_MS = 30_000


@dataclass
class POReport:
    """What one runner says it did with one PO (the harness checks the disk itself)."""

    po_number: str
    status: str  # "ok" | "failed"
    files: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def runner_arguments(description: str) -> argparse.Namespace:
    """Parse the command line every runner accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=Path, required=True, help="JSON list of PO dicts")
    parser.add_argument("--out", type=Path, required=True, help="output root")
    parser.add_argument("--report", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--storage-state", type=Path, required=True,
                        help="Playwright storage state holding the demo session cookie")
    parser.add_argument("--browser", required=True, help="Chromium executable")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--parallel-downloads", action="store_true",
                        help="start all of a PO's downloads at once (crawlee runner only)")
    parser.add_argument("--shape", choices=SHAPES, default="coupa",
                        help="the demo site's page shape the batch is served in")
    return parser.parse_args()


def browser_args() -> list[str]:
    """poolsite's flags (so memory compares like with like) but with popups allowed.

    poolsite blocks new windows and turns a script's window.open into a frame of its
    own page; a user's script has no such hook, so a header attachment that opens a
    window needs the window to open.
    """
    return [arg for arg in launch_args() if arg != "--block-new-web-contents"]


def response_name(headers: dict[str, str], url: str) -> str:
    """The file name a server suggests (Content-Disposition), else the URL's last part."""
    disposition = headers.get("content-disposition", "")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()  # RFC 2231 filename* first, then filename
        if name:
            return safe_name(name)
    return safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))


def unique_target(folder: Path, name: str) -> Path:
    """`folder/name`, or `name (2)` and so on: two files of a PO never overwrite."""
    target = folder / name
    stem, dot, ext = name.rpartition(".")
    n = 1
    while target.exists():
        n += 1
        target = folder / (f"{stem} ({n}).{ext}" if dot else f"{name} ({n})")
    return target


def body_save(folder: Path, name: str, body: bytes) -> dict[str, Any]:
    """Write a fetched file and check it."""
    target = unique_target(folder, name)
    target.write_bytes(body)
    return file_check(target)


def batch_load(path: Path) -> list[dict[str, Any]]:
    """Read a batch written by `batch_dump`; amounts come back as Decimal."""
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    for row in rows:
        row["amount"] = Decimal(row["amount"])
    return rows


def batch_dump(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps([{**row, "amount": str(row["amount"])} for row in rows]))


def safe_name(name: str) -> str:
    """Turn a server-suggested file name into one plain, bounded file name."""
    cleaned = re.sub(r"[^\w.\- ]", "_", name.replace("\\", "/").split("/")[-1]).strip(". ")
    return (cleaned or "attachment")[:150]


def po_folder(out_root: Path, po_number: str) -> Path:
    folder = out_root / safe_name(po_number)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def file_check(path: Path) -> dict[str, Any]:
    """Return name, size and sha256 of a downloaded file; raise if it is empty or HTML."""
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path.name}: empty download")
    if data.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise ValueError(f"{path.name}: an HTML page, not a document")
    return {"name": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def report_write(path: Path, reports: list[POReport], started: float, **extra: Any) -> None:
    """Write the runner's JSON report (per-PO results and its own job time)."""
    payload = {"job_seconds": time.monotonic() - started,
               "pos": [asdict(r) for r in reports], **extra}
    path.write_text(json.dumps(payload, indent=1))
