"""A worker's tree is found even after its browser died and left a child behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil

from pool_core.process_tree import is_gone, kill_tree, record_pids, worker_tree


def test_a_child_orphaned_in_the_browsers_session_still_belongs_to_the_worker(
        tmp_path: Path) -> None:
    # A stand-in for Playwright's launch: a session leader (the browser) and its child
    # (a renderer), which outlives it, is reparented and names no temp root.
    browser = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"],
                               stdout=subprocess.PIPE, start_new_session=True, text=True)
    assert browser.stdout is not None
    renderer = psutil.Process(int(browser.stdout.readline()))
    try:
        record_pids(str(tmp_path), [browser.pid])
        browser.kill()
        browser.wait()
        assert renderer.parent() is None or renderer.ppid() != browser.pid
        assert renderer in worker_tree(None, str(tmp_path))
        assert kill_tree(None, str(tmp_path)) >= 1
        assert is_gone(renderer)
    finally:
        if renderer.is_running():
            renderer.kill()

