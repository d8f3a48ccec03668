"""Check a run's output folder against the demo site's ground truth, on disk.

What a runner reports is not trusted: a PO counts as done only when its folder holds
every expected attachment (same sha256) and a PDF of the page. Runners lay folders
out differently (ours: `<root>/<po>/`, poolsite: `<root>/<batch>/<supplier>/<po>/`),
so a PO's folder is found by name anywhere under the root; hidden (work) folders
are skipped.
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


def folder_hashes(folder: Path) -> list[tuple[str, bytes]]:
    """(sha256, first bytes) of every visible file directly in `folder`."""
    hashes = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            data = path.read_bytes()
            hashes.append((hashlib.sha256(data).hexdigest(), data[:5]))
    return hashes


def outputs_verify(out_root: Path, po_numbers: list[str]) -> Verification:
    """Count POs whose folder has every expected file (by sha256) and a page PDF."""
    result = Verification(pos_total=len(po_numbers))
    folders = po_folders(out_root, set(po_numbers))
    for po_number in po_numbers:
        expected = catalog.expected(po_number).attachments
        result.files_expected += len(expected)
        present = folder_hashes(folders[po_number]) if po_number in folders else []
        have = Counter(sha for sha, _ in present)
        wanted = Counter(a.sha256 for a in expected)
        matched = sum((have & wanted).values())
        # The page PDF is a PDF that is none of the attachments.
        page_pdf = any(head == b"%PDF-" and sha not in wanted for sha, head in present)
        result.files_ok += matched
        result.page_pdfs += page_pdf
        result.pos_ok += matched == len(expected) and page_pdf
    return result
