"""Prove that a downloaded file is the document it claims to be.

The tool this project replaces counted clicks, not files, and reported COMPLETED
for files that never arrived. A file counts only when its bytes are on disk, it is
not empty, its first bytes match its type, and it is not an HTML error or viewer
page that a site served in place of the document.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pool_core.reasons import Reason

PDF = b"%PDF-"
ZIP = b"PK\x03\x04"
OLE = bytes.fromhex("D0CF11E0A1B11AE1")
# Extension -> the magic numbers a genuine file of that type starts with.
MAGIC_BY_EXTENSION: dict[str, tuple[bytes, ...]] = {
    "pdf": (PDF,),
    "xlsx": (ZIP,), "xlsm": (ZIP,), "docx": (ZIP,), "pptx": (ZIP,), "zip": (ZIP,),
    "odt": (ZIP,), "ods": (ZIP,),
    "msg": (OLE,), "doc": (OLE,), "xls": (OLE,), "ppt": (OLE,),
    "png": (b"\x89PNG\r\n\x1a\n",), "jpg": (b"\xff\xd8\xff",), "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"), "tif": (b"II*\x00", b"MM\x00*"),
    "tiff": (b"II*\x00", b"MM\x00*"),
}
# Content types that name a family when the file name has no telling extension.
MAGIC_BY_CONTENT_TYPE: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (PDF,),
    "application/zip": (ZIP,),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (ZIP,),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (ZIP,),
    "application/vnd.ms-outlook": (OLE,),
    "application/msword": (OLE,),
    "application/vnd.ms-excel": (OLE,),
}
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<meta", b"<script",
                b"<title")
SNIFF_BYTES = 1024
CHUNK = 1 << 20


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one file; `reason` is empty when it is good."""

    ok: bool
    size: int
    sha256: str
    reason: str = ""  # EMPTY | MISSING | HTML_PAGE | TYPE_MISMATCH
    detail: str = ""


def verify_file(path: Path, name: str = "", content_type: str = "") -> Verdict:
    """Check the file at `path` (named `name`, served as `content_type`); hash it."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Verdict(False, 0, "", Reason.MISSING, f"{path.name}: no file arrived")
    if size == 0:
        return Verdict(False, 0, "", Reason.EMPTY, f"{name or path.name}: 0 bytes")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        digest.update(head)
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    problem = sniff_problem(head, name or path.name, content_type)
    if problem:
        return Verdict(False, size, sha, problem[0], problem[1])
    return Verdict(True, size, sha)


def sniff_problem(head: bytes, name: str, content_type: str = "") -> tuple[str, str] | None:
    """Return (reason, detail) when the first bytes betray a wrong or HTML file, else None."""
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    # Even as "x.html": a sign-in page downloaded after the session expired is named
    # "new.html" by the browser, and must not count as a document.
    if looks_like_html(head):
        return Reason.HTML_PAGE, f"{name}: the server sent an HTML page, not the document"
    expected = MAGIC_BY_EXTENSION.get(extension)
    if expected is None:
        expected = MAGIC_BY_CONTENT_TYPE.get(content_type.split(";")[0].strip().lower())
    if expected and not head.startswith(expected):
        kind = extension or content_type
        return Reason.TYPE_MISMATCH, f"{name}: does not start like a {kind} file ({head[:8]!r})"
    return None


def looks_like_html(head: bytes) -> bool:
    """Whether the first bytes are an HTML document (an error, login or viewer page)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml"):
        return b"<html" in text
    return text.startswith(_HTML_STARTS) or (text.startswith(b"<!--") and b"<html" in text)
