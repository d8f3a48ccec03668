"""runpool processes a batch from the database end to end with real workers."""

from __future__ import annotations

import hashlib
from pathlib import Path

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import deployment, expected_files


def test_it_processes_a_queued_batch_and_exits_when_idle(site: DemoSite, tmp_path: Path) -> None:
    deploy = deployment(tmp_path, site)
    pos = [*catalog.demo_batch(site.base_url, 6),
           catalog.po_dict(site.base_url, catalog.NOT_FOUND),
           catalog.po_dict(site.base_url, catalog.REQUISITION_ONLY)]
    batch_id = deploy.import_batch(pos)

    deploy.manage("runpool", "--no-web", "--exit-when-idle", "--batch", str(batch_id),
                  "--pool-size", "2", "--storage-state", str(tmp_path / "storage-state.json"),
                  timeout=240)

    statuses = deploy.statuses(batch_id)
    assert statuses == {po["po_number"]: catalog.expected(po["po_number"]).status for po in pos}
    for po in pos:
        rows = deploy.query(
            "SELECT d.sha256, d.path, d.source FROM batches_document d JOIN "
            "batches_purchaseorder p ON p.id = d.po_id WHERE p.po_number = ? AND "
            "d.source IN ('po', 'requisition')", po["po_number"])
        assert {sha for sha, _, _ in rows} == set(expected_files(po["po_number"]))
        for sha, path, _ in rows:  # the recorded file is on disk with those bytes
            assert hashlib.sha256((deploy.output_dir / path).read_bytes()).hexdigest() == sha
    attempts = deploy.query("SELECT COUNT(*) FROM batches_attempt")[0][0]
    assert attempts == len(pos)
    runs = deploy.query("SELECT state, pos_done FROM batches_run")
    assert runs == [("finished", len(pos))]
    plan = deploy.query("SELECT state FROM supervisor_poolplan")
    assert plan == [("idle",)]
    actions = deploy.query("SELECT action, outcome, username FROM batches_controlaction")
    assert actions == [("start", "done", "cli")]
    assert deploy.leftovers() == []
