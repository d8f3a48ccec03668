"""The output disk fills up mid-batch: clear errors, and nothing half-written is 'done'."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import deployment, wait_for


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 KiB tmpfs: room for a few POs' documents, not for the batch."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
                   check=True, timeout=30)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def test_it_fails_pos_clearly_when_the_output_disk_is_full(
        site: DemoSite, tmp_path: Path, small_disk: Path) -> None:
    deploy = deployment(tmp_path, site)
    deploy.env["POOL_OUTPUT_DIR"] = str(small_disk)
    pos = catalog.demo_batch(site.base_url, 30)
    batch_id = deploy.import_batch(pos)
    deploy.manage("runpool", "--no-web", "--exit-when-idle", "--batch", str(batch_id),
                  "--pool-size", "2", "--storage-state", str(tmp_path / "storage-state.json"),
                  timeout=300)

    rows = deploy.query("SELECT po_number, status, reason, message FROM "
                        "batches_purchaseorder WHERE batch_id = ?", batch_id)
    failed = [r for r in rows if r[1] != "COMPLETED"]
    assert failed, "the disk never filled: make it smaller"
    for _, status, reason, message in failed:
        assert (status, reason) == ("FAILED", "OUTPUT_ERROR")
        assert "No space left on device" in message
    completed = [r[0] for r in rows if r[1] == "COMPLETED"]
    assert completed, "nothing fitted: make the disk larger"
    documents = deploy.query(
        "SELECT p.po_number, d.path, d.sha256, p.status FROM batches_document d JOIN "
        "batches_purchaseorder p ON p.id = d.po_id")
    for number, path, sha256, status in documents:
        assert status == "COMPLETED", f"{number} has documents but is {status}"
        assert hashlib.sha256((small_disk / path).read_bytes()).hexdigest() == sha256
    # No half-written work folder left behind on the full disk.
    work = small_disk / ".poolsite-work"
    assert not work.exists() or list(work.iterdir()) == []
    wait_for(lambda: not deploy.leftovers(), 15, "no Chromium or temp root left")
