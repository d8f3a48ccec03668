"""A PO folder is published whole: first time by rename, later by an atomic swap."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pool_core.po_folder import (
    WORK_DIR_NAME,
    final_folder,
    new_work_folder,
    publish,
    sweep_stale_work,
)


def fill(folder: Path, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        (folder / name).write_bytes(body)


def test_it_publishes_then_replaces_the_whole_folder(tmp_path: Path) -> None:
    final = final_folder(tmp_path, "b", "Supplier", "PO1")
    first = new_work_folder(tmp_path)
    fill(first, {"a.pdf": b"old a", "old-only.txt": b"x"})
    publish(first, final)
    assert sorted(p.name for p in final.iterdir()) == ["a.pdf", "old-only.txt"]
    second = new_work_folder(tmp_path)
    fill(second, {"a.pdf": b"new a", "b.pdf": b"new b"})
    publish(second, final)
    assert {p.name: p.read_bytes() for p in final.iterdir()} == {"a.pdf": b"new a",
                                                                 "b.pdf": b"new b"}
    assert not any((tmp_path / WORK_DIR_NAME).iterdir())  # the old folder is gone too


def test_it_sweeps_only_stale_work_folders(tmp_path: Path) -> None:
    stale, fresh = new_work_folder(tmp_path), new_work_folder(tmp_path)
    old = time.time() - 3 * 24 * 3600
    os.utime(stale, (old, old))
    assert sweep_stale_work(tmp_path) == 1
    assert not stale.exists() and fresh.exists()
