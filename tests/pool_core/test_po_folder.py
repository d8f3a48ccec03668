"""A PO folder is published whole: first time by rename, later by an atomic swap."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pool_core.po_folder import (
    WORK_DIR_NAME,
    final_folder,
    folder_for,
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


def test_two_pos_whose_names_sanitise_alike_get_two_folders(tmp_path: Path) -> None:
    first = final_folder(tmp_path, "b", "S", "PO:1")
    assert first == final_folder(tmp_path, "b", "S", "PO_1")
    work = new_work_folder(tmp_path)
    (work / "manifest.json").write_text('{"po_number": "PO:1"}')
    publish(work, folder_for(first, "PO:1"))
    assert folder_for(first, "PO:1") == first  # a re-run replaces its own folder
    assert folder_for(first, "PO_1") == first.with_name("PO_1 (2)")
