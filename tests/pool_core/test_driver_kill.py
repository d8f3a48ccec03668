"""The Playwright driver (node) of a worker is killed mid-PO: the PO ends elsewhere."""

from __future__ import annotations

import signal

import psutil

from pool_core.messages import POStatus
from pool_core.process_tree import is_gone
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.pool_core.test_pool_faults import (
    PoolFactory,
    assert_one_record_per_po,
    browser_of,
    busy_worker,
    wait_for,
)


def driver_of(worker_pid: int) -> psutil.Process:
    drivers = [p for p in psutil.Process(worker_pid).children() if p.name().startswith("node")]
    assert len(drivers) == 1, drivers
    return drivers[0]


def test_it_recovers_when_the_playwright_driver_is_killed(
        site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 1.0
    pool = make_pool(2)
    batch = catalog.demo_batch(site.base_url, 4)
    pool.start_processing(batch)
    victim = busy_worker(pool)
    driver_of(victim["pid"]).send_signal(signal.SIGKILL)

    assert pool.wait_until_done(90)
    assert_one_record_per_po(pool, batch)
    records = {r.po_number: r for r in pool.get_records()}
    outcomes = {n: (r.status, r.reason) for n, r in records.items()}
    assert outcomes == dict.fromkeys(records, (POStatus.COMPLETED, ""))
    assert records[victim["current_po"]].attempts == 2  # the lost attempt counted
    # The worker without a driver was replaced; the pool kept its size.
    assert wait_for(lambda: len(pool.get_status()["worker_details"]) == 2 and sum(
        w["restarts"] for w in pool.get_status()["worker_details"]) == 1)
    assert pool.stop_processing(10)


def test_it_recovers_when_the_driver_and_browser_die_together(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # Nobody is left to close the renderer: its browser and the driver (which would kill
    # the browser's process group on exit) die together. The renderer names no temp root
    # and, in lean mode, has no recorded parent (process_tree.session_members).
    site.latency = 1.0
    pool = make_pool(1)
    batch = catalog.demo_batch(site.base_url, 2)
    pool.start_processing(batch)
    victim = busy_worker(pool)
    renderers = [p for p in psutil.Process(victim["pid"]).children(recursive=True)
                 if "--type=renderer" in p.cmdline()]
    assert renderers, "no renderer to orphan"
    for proc in (driver_of(victim["pid"]), browser_of(victim["pid"])):
        proc.kill()
    assert pool.wait_until_done(60)
    assert_one_record_per_po(pool, batch)
    assert wait_for(lambda: all(is_gone(p) for p in renderers), 5), \
        "the orphaned renderer lives on"
    assert pool.stop_processing(10)
