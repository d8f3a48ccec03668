"""A PO's output folder: built hidden, then swapped in whole.

    <output root>/.poolsite-work/<random>/     files land here while a PO is processed
    <output root>/<batch>/<supplier>/<po>/     the published folder, with manifest.json

The work folder sits under the output root, so publishing is a rename on one file
system. A first run renames the work folder into place; a later run over the same
output exchanges the two folders atomically (Linux renameat2 RENAME_EXCHANGE) and then
deletes the old one, so a reader sees either the old complete folder or the new
complete one, never a mix, and files never pile up as duplicates.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from pool_core.names import inside, safe_component

WORK_DIR_NAME = ".poolsite-work"
MANIFEST_NAME = "manifest.json"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def final_folder(output_root: str | Path, batch: str, supplier: str, po_number: str) -> Path:
    """The PO's published folder, built from sanitised names and proven inside the root."""
    root = Path(output_root)
    folder = (root / safe_component(batch, fallback="batch")
              / safe_component(supplier, fallback="Unknown supplier")
              / safe_component(po_number, fallback="PO"))
    return inside(root, folder)


def folder_for(final: Path, po_number: str) -> Path:
    """`final`, or `final (2)`... when another PO's sanitised number took the name.

    "PO:1" and "PO_1" both sanitise to "PO_1"; the second must not replace the first.
    A folder whose manifest names this very PO is ours to replace (a re-run).
    """
    candidate, counter = final, 1
    while (candidate / MANIFEST_NAME).is_file() and _manifest_po(candidate) != po_number:
        counter += 1
        candidate = final.with_name(f"{final.name} ({counter})")
    return candidate


def _manifest_po(folder: Path) -> str | None:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("po_number") if isinstance(data, dict) else None


def new_work_folder(output_root: str | Path) -> Path:
    """A fresh hidden folder under the output root (same file system as the final one)."""
    work = Path(output_root) / WORK_DIR_NAME / uuid.uuid4().hex
    work.mkdir(parents=True)
    return work


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    """Write manifest.json into `folder` (fsync'd: it is the folder's proof of completeness)."""
    path = folder / MANIFEST_NAME
    data = json.dumps(manifest, indent=2, ensure_ascii=False, default=str).encode("utf-8")
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def publish(work: Path, final: Path) -> None:
    """Put the complete `work` folder at `final`, replacing any previous one atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(work, final)  # no previous folder: a plain rename is atomic
        return
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
            raise
    if _exchange(work, final):
        shutil.rmtree(work, ignore_errors=True)  # `work` now holds the old folder
        return
    # No renameat2 (not Linux, or an old kernel): move the old folder aside first.
    # A reader may find no folder for an instant, but never a half-written one.
    aside = work.with_name(work.name + "-old")
    os.rename(final, aside)
    os.rename(work, final)
    shutil.rmtree(aside, ignore_errors=True)


def discard(work: Path | None) -> None:
    """Delete a work folder that will not be published (failed attempt)."""
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)


def sweep_stale_work(output_root: str | Path, older_than_s: float = 24 * 3600) -> int:
    """Delete work folders a killed worker left behind; return how many.

    Age-based, so folders of workers still running (minutes old) are never touched.
    """
    work_root = Path(output_root) / WORK_DIR_NAME
    if not work_root.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for entry in work_root.iterdir():
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically; False when the platform cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                       _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))
