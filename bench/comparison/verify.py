"""Check a run's output folder against the demo site's ground truth, on disk.

What a runner reports is not trusted: a PO counts as done only when its folder holds
every expected attachment (same bytes: sha256 and size) and a PDF of the page. A file
counts only when its bytes are one of the PO's expected files, so a sign-in or error
page saved under a file's name never counts; nor does a page PDF stand in for a file.
Runners lay folders out differently (ours: `<root>/<po>/`, poolsite:
`<root>/<batch>/<supplier>/<po>/`), so a PO's folder is found by name anywhere under
the root; hidden (work) folders are skipped.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from poolsite.demo_erp import catalog


@dataclass
class Verification:
    """Verified counts for one run."""

    pos_total: int = 0
    pos_ok: int = 0
    files_expected: int = 0
    files_ok: int = 0
    page_pdfs: int = 0

    @property
    def all_ok(self) -> bool:
        return self.pos_ok == self.pos_total and self.files_ok == self.files_expected


def po_folders(out_root: Path, po_numbers: set[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(out_root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        name = os.path.basename(dirpath)
        if name in po_numbers:
            found[name] = Path(dirpath)
    return found


def folder_hashes(folder: Path) -> list[tuple[str, int, bytes]]:
    """(sha256, size, first bytes) of every visible file directly in `folder`."""
    hashes = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            data = path.read_bytes()
            hashes.append((hashlib.sha256(data).hexdigest(), len(data), data[:5]))
    return hashes


def outputs_verify(out_root: Path, po_numbers: list[str], shape: str = "simple") -> Verification:
    """Count POs whose folder has every expected file (same bytes) and a page PDF.

    Only POs whose ground truth is a success (COMPLETED, NO_ATTACHMENTS) belong in a
    batch verified this way: a PO that should fail has no "done" to check.
    """
    result = Verification(pos_total=len(po_numbers))
    folders = po_folders(out_root, set(po_numbers))
    for po_number in po_numbers:
        expected = catalog.expected(po_number, shape=shape).attachments
        result.files_expected += len(expected)
        present = folder_hashes(folders[po_number]) if po_number in folders else []
        have = Counter((sha, size) for sha, size, _ in present)
        wanted = Counter((a.sha256, a.size) for a in expected)
        matched = sum((have & wanted).values())
        # The page PDF is a PDF that is none of the attachments.
        page_pdf = any(head == b"%PDF-" and (sha, size) not in wanted
                       for sha, size, head in present)
        result.files_ok += matched
        result.page_pdfs += page_pdf
        result.pos_ok += matched == len(expected) and page_pdf
    return result
