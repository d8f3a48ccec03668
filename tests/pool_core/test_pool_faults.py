"""Fault tests: killed workers, killed browsers, hanging and memory-eating pages, a killed
host, stops under load, scaling mid-run, signals. Real processes, real Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pool_core import PoolStatus, ProfileManager, WorkerPool
from pool_core.events import EventKind, POFinished, PORequeued, POStarted, WorkerStopped
from pool_core.messages import POStatus
from pool_core.process_tree import is_browser_main, processes_naming
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite

PoolFactory = Callable[..., WorkerPool]
REPO = Path(__file__).resolve().parents[2]


def busy_worker(pool: WorkerPool, timeout: float = 20, po: str | None = None) -> dict:
    """Wait for a worker that is working on a PO (optionally a given one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in pool.get_status()["worker_details"]:
            if worker["current_po"] and (po is None or worker["current_po"] == po) and (
                    worker["phase"] not in ("", "assigned")):
                return worker
        time.sleep(0.05)
    raise AssertionError("no worker became busy")


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def browser_of(worker_pid: int) -> psutil.Process:
    """The browser process proper of a worker (not a renderer, not Debian's sh wrapper)."""
    browsers = [p for p in psutil.Process(worker_pid).children(recursive=True)
                if is_browser_main(p)]
    assert len(browsers) == 1, browsers
    return browsers[0]


def assert_one_record_per_po(pool: WorkerPool, batch: list[dict]) -> None:
    records = pool.get_records()
    assert sorted(r.po_number for r in records) == sorted(p["po_number"] for p in batch)
    assert all(r.state == "done" for r in records)


def test_it_retries_the_po_of_a_sigkilled_worker_elsewhere(
        site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 1.0
    events: list = []
    pool = make_pool(2, on_event=events.append)
    batch = catalog.demo_batch(site.base_url, 4)
    pool.start_processing(batch)
    victim = busy_worker(pool)
    os.kill(victim["pid"], signal.SIGKILL)
    assert pool.wait_until_done(60)
    assert_one_record_per_po(pool, batch)
    killed = next(r for r in pool.get_records() if r.po_number == victim["current_po"])
    assert (killed.status, killed.attempts) == (POStatus.COMPLETED, 2)
    assert wait_for(lambda: any(w["id"] == victim["id"] and w["restarts"] == 1
                                and w["pid"] != victim["pid"]
                                for w in pool.get_status()["worker_details"]))
    assert pool.stop_processing(10)
    assert any(isinstance(e, WorkerStopped) and e.reason.startswith("crashed") and e.crashed
               for e in events)


@pytest.mark.slow
def test_a_killed_fork_server_is_started_again_for_the_next_worker(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # Workers are forked from a fork server; if it dies, replacing a worker must not fail.
    site.latency = 1.0
    pool = make_pool(1)
    batch = catalog.demo_batch(site.base_url, 3)
    pool.start_processing(batch)
    victim = busy_worker(pool)
    server = _parent(victim["pid"])
    assert "forkserver" in " ".join(server.cmdline())
    server.kill()  # not reaped here: Python reaps and replaces it at the next fork
    os.kill(victim["pid"], signal.SIGKILL)
    assert pool.wait_until_done(60)
    assert_one_record_per_po(pool, batch)
    assert {r.status for r in pool.get_records()} == {POStatus.COMPLETED}
    (worker,) = pool.get_status()["worker_details"]
    assert worker["restarts"] == 1
    new_server = _parent(worker["pid"])
    assert "forkserver" in " ".join(new_server.cmdline()) and new_server.pid != server.pid
    assert pool.stop_processing(10)


def _parent(pid: int) -> psutil.Process:
    parent = psutil.Process(pid).parent()
    assert parent is not None
    return parent


def test_it_recovers_when_only_the_browser_is_killed(
        site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 1.0
    events: list = []
    pool = make_pool(1, on_event=events.append)
    batch = catalog.demo_batch(site.base_url, 2)
    pool.start_processing(batch)
    victim = busy_worker(pool)
    browser_of(victim["pid"]).kill()
    assert pool.wait_until_done(60)
    assert_one_record_per_po(pool, batch)
    record = next(r for r in pool.get_records() if r.po_number == victim["current_po"])
    assert (record.status, record.attempts) == (POStatus.COMPLETED, 2)
    assert wait_for(lambda: [w["restarts"] for w in pool.get_status()["worker_details"]] == [1])
    assert pool.stop_processing(10)
    ended = [(e.reason, e.crashed) for e in events if isinstance(e, WorkerStopped)]
    assert ended == [("BROWSER_CRASH", True), ("stopped", False)], ended


@pytest.mark.slow
def test_a_browser_killed_during_a_download_wait_is_a_crash_and_retried(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # Playwright fails the waiting call ("Target page, context or browser has been
    # closed") before the browser's "disconnected" event reaches the worker; the PO must
    # still count as a browser crash, and be retried, not end as the job's own error.
    events: list = []
    pool = make_pool(1, process_fn="pool_core.processing:process_po", download_timeout=4.0,
                     retry_limit=1, on_event=events.append)
    pool.start_processing([catalog.po_dict(site.base_url, catalog.STALLED_DOWNLOAD)])
    victim = busy_worker(pool, po=catalog.STALLED_DOWNLOAD)
    assert wait_for(lambda: pool.get_status()["worker_details"][0]["phase"] == "downloads")
    time.sleep(0.5)  # inside the wait for the stalled file
    browser_of(victim["pid"]).kill()
    assert pool.wait_until_done(60)
    (record,) = pool.get_records()
    truth = catalog.expected(catalog.STALLED_DOWNLOAD)
    assert [(e.reason, e.attempt) for e in events if isinstance(e, PORequeued)] == [
        ("BROWSER_CRASH", 1)]
    assert (str(record.status), record.reason, record.attempts) == (
        truth.status, truth.reason, 2), record.message
    assert pool.stop_processing(10)


def test_a_browser_loss_reported_before_its_disconnect_event_is_still_a_crash(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # The race behind the test above, made certain: the job's call fails as closed while
    # the worker's Playwright has not yet dispatched the "disconnected" event.
    events: list = []
    pool = make_pool(1, process_fn="tests.pool_core.jobs:lose_the_browser_unseen",
                     retry_limit=1, on_event=events.append)
    pool.start_processing(catalog.demo_batch(site.base_url, 1))
    assert pool.wait_until_done(60)
    (record,) = pool.get_records()
    assert (record.status, record.attempts) == (POStatus.NO_ATTACHMENTS, 2), record.message
    (requeued,) = [e for e in events if isinstance(e, PORequeued)]
    assert (requeued.reason, requeued.attempt, requeued.worker_id) == ("BROWSER_CRASH", 1, 0)
    assert "has been closed" in requeued.message and requeued.seconds > 0
    assert pool.stop_processing(10)


def test_a_browser_lost_while_idle_does_not_charge_the_next_po(
        site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1, retry_limit=0)
    pool.start_processing(catalog.demo_batch(site.base_url, 1))
    assert pool.wait_until_done(30)
    (worker,) = pool.get_status()["worker_details"]
    browser_of(worker["pid"]).kill()
    pool.submit(catalog.demo_batch(site.base_url, 1, start=500000))
    assert pool.wait_until_done(30)
    second = pool.get_records()[1]
    assert (second.status, second.attempts) == (POStatus.COMPLETED, 2)
    assert pool.stop_processing(10)


def test_it_times_out_a_hanging_page_and_replaces_the_worker(
        site: DemoSite, make_pool: PoolFactory) -> None:
    events: list = []
    pool = make_pool(2, max_task_timeout=3, nav_timeout=60, on_event=events.append)
    batch = [catalog.po_dict(site.base_url, catalog.HANG), *catalog.demo_batch(site.base_url, 3)]
    pool.start_processing(batch)
    assert pool.wait_until_done(60)
    assert_one_record_per_po(pool, batch)
    hang = next(r for r in pool.get_records() if r.po_number == catalog.HANG)
    assert (hang.status, hang.reason, hang.attempts) == (POStatus.TIMEOUT, "TASK_TIMEOUT", 1)
    assert pool.get_results()[:2] == (3, 1)
    pool._bus.flush()
    started = next(e.at for e in events if isinstance(e, POStarted) and e.po_number == catalog.HANG)
    finished = next(e.at for e in events
                    if isinstance(e, POFinished) and e.record.po_number == catalog.HANG)
    assert 3 <= finished - started <= 3 + 2
    # Replaced (a replacement that is slow to start under load may be replaced again).
    assert wait_for(lambda: len(pool.get_status()["worker_details"]) == 2)
    assert sum(w["restarts"] for w in pool.get_status()["worker_details"]) >= 1
    assert pool.stop_processing(10)


@pytest.mark.slow
def test_it_kills_a_worker_over_the_hard_memory_limit(
        site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1, process_fn="tests.pool_core.jobs:linger", memory_hard_limit_mb=500,
                     memory_soft_limit_mb=None, memory_check_interval=0.25, retry_limit=1)
    pool.start_processing([catalog.po_dict(site.base_url, catalog.MEMORY_HOG)])
    assert pool.wait_until_done(60)
    (record,) = pool.get_records()
    assert (record.status, record.reason, record.attempts) == (POStatus.FAILED, "MEMORY_LIMIT", 2)
    assert pool.stop_processing(10)


@pytest.mark.slow
def test_it_recycles_a_worker_over_the_soft_memory_limit(
        site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 0.3
    pool = make_pool(1, memory_soft_limit_mb=50, memory_hard_limit_mb=None,
                     memory_check_interval=0.25)
    batch = catalog.demo_batch(site.base_url, 3)
    pool.start_processing(batch)
    assert pool.wait_until_done(60)
    assert pool.get_results()[:2] == (3, 0)
    assert all(r.attempts == 1 for r in pool.get_records())
    assert wait_for(lambda: [w["restarts"] >= 1 for w in pool.get_status()["worker_details"]]
                    == [True])
    assert pool.stop_processing(10)


def test_it_bounds_a_stop_with_busy_workers(site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(2, process_fn="tests.pool_core.jobs:linger")
    batch = catalog.demo_batch(site.base_url, 5)
    pool.start_processing(batch)
    busy_worker(pool, po=None)
    started = time.monotonic()
    assert pool.stop_processing(timeout=1) is False
    assert time.monotonic() - started < 1 + 3
    assert pool.status is PoolStatus.IDLE
    assert_one_record_per_po(pool, batch)
    reasons = sorted(r.reason for r in pool.get_records())
    assert reasons == ["STOPPED"] * 3 + ["STOP_TIMEOUT"] * 2
    assert {r.status for r in pool.get_records()} == {POStatus.CANCELLED}


def test_a_worker_killed_during_a_stop_is_reported_as_crashed(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # On its way out a worker is "leaving"; that must not hide a kill from outside.
    site.latency = 2.0
    events: list = []
    pool = make_pool(2, on_event=events.append)
    batch = catalog.demo_batch(site.base_url, 4)
    pool.start_processing(batch)
    victim = busy_worker(pool)
    clean: list[bool] = []
    stopping = threading.Thread(target=lambda: clean.append(pool.stop_processing(20)))
    stopping.start()
    assert wait_for(lambda: pool.status is PoolStatus.STOPPING, 5)
    os.kill(victim["pid"], signal.SIGKILL)
    stopping.join(30)
    assert clean == [False]  # stop_processing: not every worker stopped cleanly
    ended = {e.worker_id: e.reason for e in events if isinstance(e, WorkerStopped)}
    assert ended[victim["id"]] == "crashed (exit code -9)", ended
    assert list(ended.values()).count("stopped") == 1, ended
    assert_one_record_per_po(pool, batch)


@pytest.mark.slow
def test_it_scales_up_and_down_mid_run(site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 0.3
    pool = make_pool(1)
    batch = catalog.demo_batch(site.base_url, 14)
    pool.start_processing(batch)
    assert pool.scale_workers(3, timeout=30) is True
    assert pool.get_status()["active_workers"] == 3
    assert pool.scale_workers(1, timeout=30) is True
    status = pool.get_status()
    assert status["active_workers"] == 1 and len(status["worker_details"]) == 1
    assert pool.wait_until_done(60)
    assert_one_record_per_po(pool, batch)
    assert pool.get_results()[:2] == (14, 0)
    with pytest.raises(ValueError):
        pool.scale_workers(9)
    assert pool.stop_processing(10)


def _start_host(site: DemoSite, roots: Path, tmp_path: Path,
                batch: list[dict]) -> subprocess.Popen[str]:
    (tmp_path / "state.json").write_text(json.dumps(site.storage_state()))
    (tmp_path / "batch.json").write_text(json.dumps(batch, default=str))
    host = subprocess.Popen(
        [sys.executable, "-m", "tests.pool_core.host_script", str(roots),
         str(tmp_path / "state.json"), str(tmp_path / "out"), str(tmp_path / "batch.json")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(host.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(60)
    assert line == ["RUNNING\n"], line
    return host


def test_a_new_pool_sweeps_what_a_killed_host_left(
        site: DemoSite, make_pool: PoolFactory, roots_dir: Path, tmp_path: Path) -> None:
    site.latency = 30  # the host's workers are busy when it dies
    host = _start_host(site, roots_dir, tmp_path, catalog.demo_batch(site.base_url, 2))
    busy_deadline = time.monotonic() + 20
    while site.hits("/order_headers/") < 2 and time.monotonic() < busy_deadline:
        time.sleep(0.05)
    host.kill()
    host.wait(10)
    stale = sorted(p.name for p in roots_dir.iterdir())
    assert len(stale) == 2
    site.latency = 0
    pool = make_pool(1)
    pool.start_processing(catalog.demo_batch(site.base_url, 1, start=400000))
    remaining = [p.name for p in roots_dir.iterdir()]
    assert not set(stale) & set(remaining)
    assert not processes_naming(stale[0]) and not processes_naming(stale[1])
    assert pool.wait_until_done(30)
    assert pool.stop_processing(10)


def test_it_never_sweeps_a_living_pool_or_another_browser(
        roots_dir: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = roots_dir / f"poolsite-{dead.pid}-w0-abcd0123"
    living = roots_dir / f"poolsite-{os.getppid()}-w0-abcd0456"
    for root, pid in ((stale, dead.pid), (living, os.getppid())):
        root.mkdir()
        started = psutil.Process(pid).create_time() if pid != dead.pid else 1.0
        (root / "owner.json").write_text(json.dumps({"pid": pid, "create_time": started}))
    # Stand-ins for browsers: their command lines name a root, like --user-data-dir.
    sleeper = "import time; time.sleep(60)"
    orphan = subprocess.Popen([sys.executable, "-c", sleeper, str(stale)])
    bystander = subprocess.Popen([sys.executable, "-c", sleeper, str(living)])
    try:
        report = ProfileManager(temp_dir=str(roots_dir)).sweep_stale()
        assert report.roots_removed == 1 and report.processes_killed >= 1
        assert orphan.wait(5) == -signal.SIGKILL
        assert bystander.poll() is None and living.exists() and not stale.exists()
    finally:
        bystander.kill()
        bystander.wait(5)
        orphan.kill()
        living.joinpath("owner.json").unlink()
        living.rmdir()


def test_sigterm_stops_the_host_gracefully(
        site: DemoSite, roots_dir: Path, tmp_path: Path) -> None:
    site.latency = 0.5
    host = _start_host(site, roots_dir, tmp_path, catalog.demo_batch(site.base_url, 8))
    time.sleep(0.5)
    host.send_signal(signal.SIGTERM)
    out, _ = host.communicate(timeout=30)
    assert host.returncode == 0
    words = out.split()
    assert words[:2] == ["STOPPED", "IDLE"]
    successful, failed, cancelled = map(int, words[2:5])
    assert successful + failed + cancelled == 8 and cancelled > 0
    assert not list(roots_dir.iterdir())


def test_events_are_picklable(site: DemoSite, make_pool: PoolFactory) -> None:
    import pickle

    events: list = []
    pool = make_pool(1, on_event=events.append)
    pool.start_processing(catalog.demo_batch(site.base_url, 1))
    assert pool.wait_until_done(30)
    assert wait_for(lambda: any(e.kind is EventKind.HEARTBEAT for e in events))
    assert pool.stop_processing(10)
    assert {e.kind for e in events} >= {EventKind.PO_FINISHED, EventKind.HEARTBEAT}
    for event in events:
        assert pickle.loads(pickle.dumps(event)) == event

