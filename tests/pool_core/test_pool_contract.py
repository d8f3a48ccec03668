"""WorkerPool as docs/worker_pool.md describes it, method by method, on real Chromium and
the demo site."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pool_core import (
    PoolStatus,
    ProfileCreationError,
    ProfileManager,
    WorkerPool,
    WorkerStartupError,
)
from pool_core.browser import BROWSER_MODES, launch_args, mode_args
from pool_core.events import EventKind
from pool_core.messages import POStatus
from pool_core.reasons import Pause, PauseReason
from pool_core.task_source import InMemoryTaskSource, tasks_from_po_list
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite

STATUS_KEYS = {"pool_status", "active_workers", "tasks_pending", "tasks_active",
               "tasks_completed", "tasks_failed", "worker_details", "performance_metrics"}
WORKER_KEYS = {"id", "pid", "state", "current_po", "phase", "started_at", "tasks_done",
               "restarts", "memory_mb"}
PoolFactory = Callable[..., WorkerPool]


def test_it_processes_a_batch_and_reports_it(site: DemoSite, make_pool: PoolFactory,
                                             tmp_path: Path) -> None:
    events: list = []
    pool = make_pool(2, on_event=events.append)
    batch = catalog.demo_batch(site.base_url, 6)
    assert pool.start_processing(batch, batch="b1") is True
    assert pool.status is PoolStatus.RUNNING
    status = pool.get_status()
    assert set(status) >= STATUS_KEYS
    assert status["active_workers"] == 2
    assert all(set(w) >= WORKER_KEYS for w in status["worker_details"])
    with pytest.raises(RuntimeError):
        pool.start_processing(batch)
    with pytest.raises(RuntimeError, match="not PAUSED"):
        pool.resume_processing()
    with pytest.raises(RuntimeError):
        pool.reset()

    assert pool.wait_until_done(60)
    successful, failed, perf = pool.get_results()
    assert (successful, failed) == (6, 0)
    assert perf["task_seconds_p95"] > 0 and perf["throughput_per_minute"] > 0
    assert pool.stop_processing(timeout=10) is True
    assert pool.status is PoolStatus.IDLE
    records = pool.get_records()
    assert [r.po_number for r in records] == [po["po_number"] for po in batch]
    for record in records:
        assert record.status is POStatus.COMPLETED and record.attempts == 1
        assert (tmp_path / "out" / "b1" / record.po_number / "page.pdf").stat().st_size > 500
    pool._bus.flush()
    kinds = {e.kind for e in events}
    assert {EventKind.WORKER_STARTED, EventKind.WORKER_STOPPED, EventKind.PO_STARTED,
            EventKind.PO_FINISHED, EventKind.PHASE_CHANGED, EventKind.STATE_CHANGED} <= kinds
    states = [(e.old, e.new) for e in events if e.kind is EventKind.STATE_CHANGED]
    assert states == [(PoolStatus.IDLE, PoolStatus.STARTING),
                      (PoolStatus.STARTING, PoolStatus.RUNNING),
                      (PoolStatus.RUNNING, PoolStatus.STOPPING),
                      (PoolStatus.STOPPING, PoolStatus.IDLE)]
    with pytest.raises(RuntimeError):
        pool.stop_processing()
    with pytest.raises(RuntimeError):
        pool.pause_processing()


@pytest.mark.slow
def test_it_can_forget_finished_pos_so_a_long_run_does_not_grow(
        site: DemoSite, make_pool: PoolFactory) -> None:
    events: list = []
    pool = make_pool(2, keep_records=False, on_event=events.append)
    batch = catalog.demo_batch(site.base_url, 6)
    pool.start_processing(batch)
    assert pool.wait_until_done(60)
    status = pool.get_status()
    assert (status["tasks_total"], status["tasks_completed"]) == (6, 6)
    assert pool.get_results()[:2] == (6, 0)
    assert pool.get_records() == []  # counted, handed on (events, task source), forgotten
    pool._bus.flush()
    finished = [e.record for e in events if e.kind is EventKind.PO_FINISHED]
    assert sorted(r.po_number for r in finished) == sorted(po["po_number"] for po in batch)
    assert all(r.status is POStatus.COMPLETED for r in finished)
    assert pool.stop_processing(timeout=10) is True


@pytest.mark.slow
def test_it_pauses_and_resumes(site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 0.3
    pool = make_pool(2)
    pool.start_processing(catalog.demo_batch(site.base_url, 8))
    assert pool.pause_processing() is True
    with pytest.raises(RuntimeError):
        pool.pause_processing()
    deadline = time.monotonic() + 20
    while pool.get_status()["tasks_active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    paused_done = pool.get_results()[0]
    time.sleep(1.0)
    assert pool.get_status()["tasks_active"] == 0
    assert pool.get_results()[0] == paused_done < 8
    assert pool.get_status()["pause"] == Pause(PauseReason.REQUESTED)
    assert pool.get_status()["pause_reason"] == "paused by request"
    assert pool.resume_processing() is True
    assert pool.wait_until_done(60)
    assert pool.get_results()[:2] == (8, 0)
    assert pool.stop_processing(timeout=10)


def test_it_stops_from_paused_and_cancels_what_is_left(
        site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1)
    pool.start_processing(catalog.demo_batch(site.base_url, 20))
    pool.pause_processing()
    assert pool.stop_processing(timeout=10) is True
    records = pool.get_records()
    assert len(records) == 20 and all(r.state == "done" for r in records)
    cancelled = [r for r in records if r.status is POStatus.CANCELLED]
    assert cancelled and all(r.reason == "STOPPED" for r in cancelled)
    successful, failed, perf = pool.get_results()
    assert successful + failed + perf["cancelled"] == 20


def test_it_refuses_to_start_without_disk_space(
        site: DemoSite, make_pool: PoolFactory, roots_dir: Path) -> None:
    pool = make_pool(2, min_free_disk_mb=10**9)
    with pytest.raises(ProfileCreationError, match="free"):
        pool.start_processing(catalog.demo_batch(site.base_url, 2))
    assert pool.status is PoolStatus.ERROR
    assert not list(roots_dir.iterdir())
    with pytest.raises(RuntimeError):
        pool.start_processing(catalog.demo_batch(site.base_url, 2))
    pool.reset()
    assert pool.status is PoolStatus.IDLE


def test_it_reports_a_worker_that_cannot_start(
        site: DemoSite, make_pool: PoolFactory, roots_dir: Path) -> None:
    pool = make_pool(2, browser_path="/bin/false")
    with pytest.raises(WorkerStartupError):
        pool.start_processing(catalog.demo_batch(site.base_url, 2))
    assert pool.status is PoolStatus.ERROR
    assert not list(roots_dir.iterdir())
    pool.reset()


def test_it_clones_a_base_profile(site: DemoSite, make_pool: PoolFactory, roots_dir: Path,
                                  tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "Default" / "Local Storage").mkdir(parents=True)
    (base / "Local State").write_text("{}")
    (base / "Default" / "Preferences").write_text("{}")
    (base / "SingletonLock").write_text("stale")
    (base / "Default" / "Cache").mkdir()
    manager = ProfileManager(temp_dir=str(roots_dir), base_profile=str(base))
    root = manager.create_root(0)
    copied = {p.relative_to(root.profile_dir).as_posix()
              for p in Path(root.profile_dir).rglob("*")}
    assert copied == {"Local State", "Default", "Default/Preferences", "Default/Local Storage"}
    manager.remove_root(root.path)
    # Workers run on the clone as a persistent profile.
    pool = make_pool(1, profile_manager=ProfileManager(temp_dir=str(roots_dir),
                                                       base_profile=str(base)))
    pool.start_processing([{"po_number": "PO1", "supplier": "S", "amount": 1,
                            "url": f"{site.base_url}/healthz"}])
    assert pool.wait_until_done(30)
    assert pool.get_results()[:2] == (1, 0)
    assert pool.stop_processing(10)


def test_it_pauses_itself_when_the_session_is_gone(
        site: DemoSite, make_pool: PoolFactory) -> None:
    events: list = []
    pool = make_pool(2, signed_in=False, on_event=events.append)
    pool.start_processing(catalog.demo_batch(site.base_url, 4))
    assert pool.wait_for_status(PoolStatus.PAUSED, 30)
    status = pool.get_status()
    assert status["pause_reason"].startswith("LOGIN_REQUIRED: ")
    assert status["pause"].reason is PauseReason.LOGIN_REQUIRED and status["pause"].automatic
    assert status["tasks_failed"] == 0  # the POs wait for the operator, they did not fail
    assert pool.stop_processing(timeout=10)
    assert {r.status for r in pool.get_records()} == {POStatus.CANCELLED}
    pool._bus.flush()
    assert any(e.kind is EventKind.STATE_CHANGED and e.new is PoolStatus.PAUSED
               and "LOGIN_REQUIRED" in e.reason and e.pause == status["pause"]
               for e in events)


def test_it_pauses_after_consecutive_site_failures_and_resumes(
        site: DemoSite, make_pool: PoolFactory) -> None:
    site.down = True
    pool = make_pool(1, pause_after_site_failures=2, retry_limit=5)
    pool.start_processing(catalog.demo_batch(site.base_url, 3))
    assert pool.wait_for_status(PoolStatus.PAUSED, 30)
    status = pool.get_status()
    assert status["pause_reason"].startswith("SITE_FAILING: ")
    assert status["pause"].reason is PauseReason.SITE_FAILING
    assert Pause.from_text(status["pause_reason"]) == status["pause"]
    site.down = False
    pool.resume_processing()
    assert pool.wait_until_done(30)
    assert pool.get_results()[:2] == (3, 0)
    assert pool.stop_processing(10)


@pytest.mark.slow
def test_it_honours_retry_after_without_burning_the_retry_budget(
        site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1, retry_limit=0)
    pool.start_processing([catalog.po_dict(site.base_url, catalog.RATE_LIMITED)])
    started = time.monotonic()
    assert pool.wait_until_done(30)
    (record,) = pool.get_records()
    assert record.status is POStatus.COMPLETED
    assert record.attempts == catalog.RATE_LIMIT_HITS + 1
    assert time.monotonic() - started >= catalog.RETRY_AFTER_SECONDS * catalog.RATE_LIMIT_HITS
    assert pool.stop_processing(10)


def test_it_bounds_rate_limit_requeues(site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1, retry_limit=0, max_rate_limit_requeues=1)
    pool.start_processing([catalog.po_dict(site.base_url, catalog.RATE_LIMITED)])
    assert pool.wait_until_done(30)
    (record,) = pool.get_records()
    assert (record.status, record.reason, record.attempts) == (POStatus.FAILED, "HTTP_429", 2)
    assert pool.stop_processing(10)


def test_it_records_job_errors_with_their_traceback(
        site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1, process_fn="tests.pool_core.jobs:explode")
    pool.start_processing(catalog.demo_batch(site.base_url, 2))
    assert pool.wait_until_done(30)
    records = pool.get_records()
    assert {(r.status, r.reason) for r in records} == {(POStatus.FAILED, "JOB_ERROR")}
    assert "ZeroDivisionError" in records[0].remote_traceback
    assert pool.stop_processing(10)


def test_it_recycles_the_browser_every_n_pos(site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1, recycle_browser_after=1)
    pool.start_processing(catalog.demo_batch(site.base_url, 3))
    assert pool.wait_until_done(30)
    assert pool.get_results()[:2] == (3, 0)
    assert pool.get_status()["worker_details"][0]["restarts"] == 0  # same worker, new browser
    assert pool.stop_processing(10)


def test_it_reports_a_missing_job_function_as_a_startup_error(
        site: DemoSite, make_pool: PoolFactory, roots_dir: Path) -> None:
    pool = make_pool(1, process_fn="tests.pool_core.jobs:no_such_job")
    with pytest.raises(WorkerStartupError, match="no_such_job"):
        pool.start_processing(catalog.demo_batch(site.base_url, 1))
    pool.reset()


# The default, "auto", runs everywhere else: lean as root (here and in CI), else standard.
@pytest.mark.parametrize("mode", ["standard", "lean"])
def test_it_runs_other_browser_modes(site: DemoSite, make_pool: PoolFactory, mode: str) -> None:
    pool = make_pool(1, browser_mode=mode)
    pool.start_processing(catalog.demo_batch(site.base_url, 2))
    assert pool.wait_until_done(30)
    assert pool.get_results()[:2] == (2, 0)
    assert pool.stop_processing(10)
    with pytest.raises(ValueError, match="browser_mode"):
        WorkerPool(1, browser_mode="tiny")


def test_auto_mode_is_lean_only_without_the_sandbox() -> None:
    lean = BROWSER_MODES["lean"]
    assert (mode_args("auto") == lean) == ("--no-sandbox" in launch_args())
    assert mode_args("standard") == ()


def test_it_feeds_more_pos_while_running(site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1)
    pool.start_processing(catalog.demo_batch(site.base_url, 2))
    assert pool.submit(catalog.demo_batch(site.base_url, 2, start=300000)) == 2
    with pytest.raises(ValueError, match="already"):
        pool.submit(catalog.demo_batch(site.base_url, 1))
    assert pool.wait_until_done(30)
    assert pool.get_results()[:2] == (4, 0)
    assert pool.stop_processing(10)


@pytest.mark.slow
def test_it_survives_concurrent_calls_from_many_threads(
        site: DemoSite, make_pool: PoolFactory) -> None:
    site.latency = 0.1
    pool = make_pool(2)
    n = 16
    pool.start_processing(catalog.demo_batch(site.base_url, n))
    errors: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                status = pool.get_status()
                counted = (status["tasks_pending"] + status["tasks_active"]
                           + status["tasks_completed"] + status["tasks_failed"]
                           + status["tasks_cancelled"])
                assert counted <= n + 2, status  # retries in flight may double count briefly
                pool.get_results()
                assert len(pool.get_records()) == n
            except BaseException as exc:
                errors.append(exc)
                return

    def steer() -> None:
        for size in (3, 1, 2):
            for call in (pool.pause_processing, pool.resume_processing):
                # Another thread may get there first: an illegal move, state unchanged.
                with contextlib.suppress(RuntimeError):
                    call()
            with contextlib.suppress(RuntimeError):
                pool.scale_workers(size, wait=False)

    threads = [threading.Thread(target=poll) for _ in range(3)]
    threads += [threading.Thread(target=steer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads[3:]:
        t.join(30)
    if pool.status is PoolStatus.PAUSED:
        pool.resume_processing()
    assert pool.wait_until_done(60)
    results: list[bool | str] = []

    def stop() -> None:
        try:
            results.append(pool.stop_processing(10))
        except RuntimeError:
            results.append("already idle")  # came after the first stop had finished

    stoppers = [threading.Thread(target=stop) for _ in range(3)]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(30)
    done.set()
    for t in threads[:3]:
        t.join(10)
    assert not errors, errors
    assert len(results) == 3 and True in results and set(results) <= {True, "already idle"}
    records = pool.get_records()
    assert len(records) == n and all(r.status is POStatus.COMPLETED for r in records)
    assert pool.status is PoolStatus.IDLE


def test_a_po_arriving_on_a_later_attempt_has_spent_that_much_of_its_retry_budget(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # As a database source hands out a PO re-claimed after its host died mid-attempt.
    fresh, reclaimed = tasks_from_po_list(catalog.demo_batch(site.base_url, 2))
    source = InMemoryTaskSource([fresh, replace(reclaimed, attempt=3)])
    site.down = True  # every attempt fails with a retryable HTTP 503
    pool = make_pool(1, retry_limit=2, retry_backoff=0.0, pause_after_site_failures=0,
                     task_source=source)
    pool.start_processing(None)
    assert pool.wait_until_done(60)
    records = {r.po_number: r for r in pool.get_records()}
    assert {r.status for r in records.values()} == {POStatus.FAILED}
    assert records[fresh.po_number].attempts == 3  # its first attempt and two retries
    assert records[reclaimed.po_number].attempts == 1  # attempts 1-2 were elsewhere
    assert pool.stop_processing(10)


def test_workers_hold_no_django_even_when_their_host_does(
        site: DemoSite, make_pool: PoolFactory) -> None:
    # Workers are forked from a fork server, never from the (threaded, Django) host.
    assert "django" in sys.modules  # this test process is such a host (pytest-django)
    pool = make_pool(1, process_fn="tests.pool_core.jobs:report_modules")
    pool.start_processing(catalog.demo_batch(site.base_url, 1))
    assert pool.wait_until_done(30)
    (record,) = pool.get_records()
    assert record.message == "playwright,pool_core"
    assert pool.stop_processing(10)
