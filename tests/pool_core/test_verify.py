"""A file counts only when its bytes arrived and look like the document it claims to be."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pool_core.verify import verify_file
from poolsite.demo_erp import filetypes

GOOD = [
    ("quote.pdf", filetypes.make_pdf("hello")),
    ("lines.xlsx", filetypes.make_xlsx([["a", "b"]])),
    ("approval.msg", filetypes.make_msg("seed")),
    ("notes.txt", filetypes.make_text(["plain text"])),
    ("data.bin", b"\x00\x01\x02"),
]
BAD = [
    ("empty.pdf", b"", "EMPTY"),
    ("login.pdf", b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML_PAGE"),
    ("error.xlsx", b"\n  <html><head><title>Error</title>", "HTML_PAGE"),
    ("viewer.txt", b"\xef\xbb\xbf<html><body>viewer</body></html>", "HTML_PAGE"),
    ("new.html", b"<!doctype html><html><form id='new_user'>", "HTML_PAGE"),
    ("fake.pdf", b"PK\x03\x04not a pdf", "TYPE_MISMATCH"),
    ("fake.xlsx", b"%PDF-1.4 not a workbook", "TYPE_MISMATCH"),
    ("fake.msg", b"just text", "TYPE_MISMATCH"),
]


@pytest.mark.parametrize(("name", "body"), GOOD)
def test_it_accepts_genuine_files_and_hashes_them(name: str, body: bytes,
                                                  tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    verdict = verify_file(path, name)
    assert verdict.ok, verdict
    assert verdict.size == len(body)
    assert verdict.sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(("name", "body", "reason"), BAD)
def test_it_refuses_empty_html_and_mistyped_files(name: str, body: bytes, reason: str,
                                                  tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    verdict = verify_file(path, name)
    assert not verdict.ok
    assert verdict.reason == reason


def test_it_reports_a_file_that_never_arrived(tmp_path: Path) -> None:
    verdict = verify_file(tmp_path / "missing.pdf")
    assert (verdict.ok, verdict.reason) == (False, "MISSING")


def test_it_uses_the_content_type_when_the_name_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "download"
    path.write_bytes(b"<html>oops</html>")
    assert verify_file(path, "download", "application/pdf").reason == "HTML_PAGE"
    path.write_bytes(b"plain")
    assert verify_file(path, "download", "application/pdf").reason == "TYPE_MISMATCH"
