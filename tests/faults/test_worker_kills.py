"""Workers killed again and again: every PO still ends once, with the right files."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import psutil

from pool_core.process_tree import worker_processes
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import deployment, expected_files, wait_for

KILLS = 20


def _working(supervisor_pid: int) -> list[psutil.Process]:
    """Worker processes that are up (their browser runs)."""
    found = []
    for worker in worker_processes(supervisor_pid):
        try:
            tree = " ".join(p.name() for p in worker.children(recursive=True))
        except psutil.Error:
            continue
        if "headless" in tree:
            found.append(worker)
    return found


def test_it_survives_twenty_worker_kills_during_a_hundred_po_batch(
        site: DemoSite, tmp_path: Path) -> None:
    # The batch must outlast twenty kills (~13 s at one per 0.3-1.0 s): about 30 s here.
    site.latency = 0.4
    deploy = deployment(tmp_path, site)
    pos = catalog.demo_batch(site.base_url, 100)
    batch_id = deploy.import_batch(pos)
    proc = deploy.runpool("--no-web", "--exit-when-idle", "--batch", str(batch_id),
                          "--pool-size", "4", "--storage-state",
                          str(tmp_path / "storage-state.json"))
    rng = random.Random(20)
    killed: set[int] = set()
    try:
        wait_for(lambda: "COMPLETED" in deploy.statuses(batch_id).values(), 90,
                 "the pool running")
        deadline = time.monotonic() + 300
        while len(killed) < KILLS and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.0))
            victims = [w for w in _working(proc.pid) if w.pid not in killed]
            if victims:
                victim = rng.choice(victims)
                try:
                    victim.send_signal(signal.SIGKILL)
                    killed.add(victim.pid)
                except psutil.NoSuchProcess:
                    continue
        proc.wait(400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(killed) == KILLS, f"ended after {len(killed)} kills:\n{deploy.log()[-4000:]}"
    assert proc.returncode == 0, deploy.log()[-3000:]

    statuses = deploy.statuses(batch_id)
    assert set(statuses) == {po["po_number"] for po in pos}
    assert not {"QUEUED", "RUNNING"} & set(statuses.values())  # each PO ended once
    completed = [n for n, s in statuses.items() if s == "COMPLETED"]
    assert len(completed) >= 95, statuses  # only a PO killed on every attempt may fail
    for number in completed:
        rows = deploy.query("SELECT d.sha256 FROM batches_document d JOIN "
                            "batches_purchaseorder p ON p.id = d.po_id WHERE "
                            "p.po_number = ? AND d.source = 'po'", number)
        assert sorted(r[0] for r in rows) == sorted(expected_files(number))
    crashes = deploy.query("SELECT COUNT(*) FROM supervisor_poolevent WHERE "
                           "kind = 'worker_crashed'")[0][0]
    assert crashes >= KILLS
    try:
        wait_for(lambda: not deploy.leftovers(), 15, "no Chromium or temp root left")
    except AssertionError:
        raise AssertionError(f"left behind: {deploy.leftovers()}") from None
