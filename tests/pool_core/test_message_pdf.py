"""Outlook .msg attachments: kept as they are, with a readable PDF beside them."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from pool_core.message_pdf import message_text, save_message_pdf
from poolsite.demo_erp import filetypes


@pytest.fixture(scope="module")
def page(browser_path: str, worker_args: list[str]) -> Iterator[Page]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=worker_args)
        yield browser.new_page()
        browser.close()


def test_it_reads_the_demo_sites_outlook_messages(tmp_path: Path) -> None:
    path = tmp_path / "approval.msg"
    path.write_bytes(filetypes.make_msg("PO200002"))
    text = message_text(path)
    assert text is not None
    assert text["Subject"] == "Approval: PO200002"
    assert "PO200002 is approved" in text["body"]
    assert text["From"] == "approver@example.com"


def test_it_prints_a_message_to_pdf_with_its_text_escaped(page: Page, tmp_path: Path) -> None:
    path = tmp_path / "approval.msg"
    path.write_bytes(filetypes.make_msg("<img src=http://127.0.0.2/x onerror=alert(1)>"))
    target = tmp_path / "approval.msg.pdf"
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    assert save_message_pdf(page, path, target)
    assert target.read_bytes().startswith(b"%PDF-")
    assert requests == []  # the message's markup was text, nothing was loaded
    assert "<img" in page.locator("pre").inner_text()


def test_an_unreadable_or_unsupported_message_makes_no_pdf(
        page: Page, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.msg"
    broken.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + b"\0" * 600)
    assert message_text(broken) is None
    assert not save_message_pdf(page, broken, tmp_path / "broken.msg.pdf")
    assert not (tmp_path / "broken.msg.pdf").exists()

    good = tmp_path / "good.msg"
    good.write_bytes(filetypes.make_msg("PO1"))
    real_import = builtins.__import__

    def without_extract_msg(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "extract_msg":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_extract_msg)
    assert message_text(good) is None  # optional: the .msg alone is kept
