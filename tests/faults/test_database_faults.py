"""The database is locked for a while mid-batch: the supervisor waits, loses nothing."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import deployment, wait_for

BUSY_SECONDS = 5  # the deployment's SQLite busy timeout (20 s by default)
LOCKED_SECONDS = 10  # longer than that: writes fail and retry


def test_it_waits_out_a_locked_sqlite_database(site: DemoSite, tmp_path: Path) -> None:
    site.latency = 0.2
    deploy = deployment(tmp_path, site)
    deploy.env["POOL_LEASE_SECONDS"] = "90"  # leases outlive the outage
    deploy.env["POOL_SQLITE_BUSY_SECONDS"] = str(BUSY_SECONDS)
    pos = catalog.demo_batch(site.base_url, 24)
    batch_id = deploy.import_batch(pos)
    proc = deploy.runpool("--no-web", "--exit-when-idle", "--batch", str(batch_id),
                          "--pool-size", "2", "--storage-state",
                          str(tmp_path / "storage-state.json"))
    try:
        wait_for(lambda: "COMPLETED" in deploy.statuses(batch_id).values(), 90, "progress")
        locker = sqlite3.connect(deploy.data_dir / "poolsite.sqlite3", timeout=30,
                                 isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # nobody else may read or write now
        time.sleep(LOCKED_SECONDS)
        locker.execute("ROLLBACK")
        locker.close()
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = deploy.log()
    assert proc.returncode == 0, log[-3000:]
    assert "database unavailable while recording" in log  # the fault really bit
    assert deploy.statuses(batch_id) == {po["po_number"]: "COMPLETED" for po in pos}
    attempts = deploy.query("SELECT COUNT(*) FROM batches_attempt")[0][0]
    assert attempts == len(pos)  # no PO done twice, no result lost
    duplicates = deploy.query("SELECT po_id, path FROM batches_document GROUP BY po_id, "
                              "path HAVING COUNT(*) > 1")
    assert duplicates == []
    wait_for(lambda: not deploy.leftovers(), 15, "no Chromium or temp root left")
