"""runpool survives being killed: nothing lost, nothing twice, nothing left behind."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import deployment, expected_files, wait_for


def test_it_recovers_from_sigkill_of_runpool_mid_batch(site: DemoSite, tmp_path: Path) -> None:
    site.latency = 0.4
    deploy = deployment(tmp_path, site)
    pos = catalog.demo_batch(site.base_url, 14)
    batch_id = deploy.import_batch(pos)
    state = str(tmp_path / "storage-state.json")

    first = deploy.runpool("--no-web", "--batch", str(batch_id), "--pool-size", "2",
                           "--storage-state", state)
    try:
        wait_for(lambda: sum(s == "COMPLETED" for s in deploy.statuses(batch_id).values())
                 >= 3, 120, "three POs completed")
        wait_for(lambda: "RUNNING" in deploy.statuses(batch_id).values(), 30, "a PO in flight")
    finally:
        first.send_signal(signal.SIGKILL)  # the supervisor only; its workers are orphaned
        first.wait(10)
    in_flight = {n for n, s in deploy.statuses(batch_id).items() if s == "RUNNING"}
    assert in_flight

    second = deploy.runpool("--no-web", "--exit-when-idle", "--storage-state", state)
    try:
        second.wait(240)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, deploy.log()[-3000:]

    statuses = deploy.statuses(batch_id)
    assert statuses == {po["po_number"]: "COMPLETED" for po in pos}, deploy.log()[-3000:]
    for number in in_flight:  # the crash counted as an attempt
        attempts = deploy.query("SELECT attempts FROM batches_purchaseorder WHERE "
                                "po_number = ? AND batch_id = ?", number, batch_id)[0][0]
        assert attempts >= 2
    for po in pos:  # one set of files per PO, exactly the expected ones
        rows = deploy.query(
            "SELECT d.sha256 FROM batches_document d JOIN batches_purchaseorder p ON "
            "p.id = d.po_id WHERE p.po_number = ? AND d.source = 'po'", po["po_number"])
        assert sorted(r[0] for r in rows) == sorted(expected_files(po["po_number"]))
    runs = sorted(r[0] for r in deploy.query("SELECT state FROM batches_run"))
    assert runs == ["crashed", "finished"]
    wait_for(lambda: not deploy.leftovers(), 10, "no Chromium or temp root left")


def test_it_stops_gracefully_on_sigterm_and_leaves_no_po_running(
        site: DemoSite, tmp_path: Path) -> None:
    site.latency = 0.4
    deploy = deployment(tmp_path, site)
    batch_id = deploy.import_batch(catalog.demo_batch(site.base_url, 30))
    proc = deploy.runpool("--no-web", "--batch", str(batch_id), "--pool-size", "2",
                          "--stop-timeout", "20", "--storage-state",
                          str(tmp_path / "storage-state.json"))
    try:
        wait_for(lambda: "COMPLETED" in deploy.statuses(batch_id).values(), 120,
                 "a PO completed")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, deploy.log()[-3000:]
    assert stopped_in < 20 + 10
    statuses = deploy.statuses(batch_id).values()
    assert "RUNNING" not in statuses
    assert set(statuses) <= {"COMPLETED", "QUEUED"}  # finished, or handed back intact
    assert "QUEUED" in statuses  # it really stopped mid-batch
    assert deploy.query("SELECT state FROM batches_run") == [("finished",)]
    assert deploy.query("SELECT COUNT(*) FROM supervisor_poolhost WHERE stopped_at IS NULL"
                        ) == [(0,)]
    assert deploy.leftovers() == []
