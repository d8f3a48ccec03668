"""WorkerPool: the engine's public, thread-safe object (API reference: docs/worker_pool.md).

It validates, moves the state machine and hands work to a Dispatcher thread
(pool_core.dispatcher), which owns the worker processes for one start..stop cycle and
is reached only through its interface (pause, resume, set_target, request_stop, abort).
One condition variable guards everything (the dispatcher's docstring lists what it
shares); it is never held while waiting for a worker or a browser (waits release it),
only briefly while start_processing() creates the temp roots. Browser launch policy
(flags, modes, the driver's Node settings) lives in pool_core.browser.

Signals: call install_signal_handlers() in the host's main thread to turn SIGTERM and
SIGINT into a graceful stop_processing().
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pool_core.browser import (
    DEFAULT_NODE_OPTIONS,
    default_node_compile_cache,
    find_browser,
    worker_browser_args,
)
from pool_core.config import (
    DEFAULT_PROCESS_FN,
    HeadlessConfiguration,
    PoolOptions,
    WorkerSpec,
    check_pool_size,
)
from pool_core.dispatcher import Dispatcher
from pool_core.errors import ProfileCreationError, WorkerStartupError
from pool_core.events import EventBus, PoolEvent, PORecord, StateChanged
from pool_core.priority import check_niceness
from pool_core.profiles import ProfileManager, WorkerRoot
from pool_core.reasons import Pause, PauseReason
from pool_core.records import RunBook
from pool_core.sites import SitePreset
from pool_core.state import PoolStateMachine, PoolStatus
from pool_core.task_source import InMemoryTaskSource, TaskSource, tasks_from_po_list
from pool_core.worker import split_process_fn

log = logging.getLogger(__name__)


class WorkerPool:
    """A pool of 1-8 worker processes, each driving its own Chromium.

    Everything after `pool_size` is keyword-only; `headless_config` defaults to a
    headless HeadlessConfiguration(). docs/worker_pool.md describes every argument,
    method, state and exception.

    Args:
        pool_size: number of concurrent workers (1-8).
        headless_config: browser mode for all workers.
        profile_manager: creates the workers' temp roots (default: a ProfileManager in
            the system temp folder, no base profile).
        max_task_timeout: seconds one PO may take before its worker's tree is killed.
        output_root: where the processing function saves documents.
        site: the SitePreset of the procurement site (allow-list, login detection).
        process_fn: dotted path of the processing function (see pool_core.config).
        retry_limit, retry_backoff, max_rate_limit_requeues, pause_after_site_failures,
        memory_soft_limit_mb, memory_hard_limit_mb, memory_check_interval: the retry,
            pause and memory policy; see pool_core.config.PoolOptions.
        recycle_browser_after: relaunch a worker's browser after this many POs.
        browser_path: Chromium executable (default: pool_core.browser.find_browser()).
        browser_mode: "auto" (lean without Chromium's sandbox, else standard),
            "standard", "lean" (~11 MB less per busy worker, no more CPU) or
            "single-process" (unstable); see pool_core.browser.BROWSER_MODES.
        extra_browser_args: more Chromium flags.
        node_options: NODE_OPTIONS for each Playwright driver ("" to leave unset); see
            pool_core.browser.DEFAULT_NODE_OPTIONS.
        browser_nice: niceness (0-19) of each worker's driver and browser, so that the
            coordinating processes answer first (0: the worker's); see pool_core.priority.
        node_compile_cache: folder for Node's code cache, shared by all drivers and kept
            between runs (default: <system temp>/poolsite-node-compile-cache; "" disables).
        nav_timeout / download_timeout: seconds, passed to the job in JobEnv.
        startup_timeout: seconds a worker may take to become ready.
        task_source: a TaskSource to pull from when start_processing() gets no list.
        on_event: callable receiving pool_core.events values (in the event thread).
        keep_records: keep every finished PO's record for get_records() (the default).
            False for a long-running host whose task source stores the records (runpool):
            a finished PO is then counted and forgotten, so the host's memory does not
            grow with every PO, and get_records() lists only POs not finished yet.
    """

    def __init__(
        self,
        pool_size: int = 4,
        *,
        headless_config: HeadlessConfiguration | None = None,
        profile_manager: ProfileManager | None = None,
        max_task_timeout: float = 300,
        output_root: str = "var/output",
        site: SitePreset | None = None,
        process_fn: str = DEFAULT_PROCESS_FN,
        retry_limit: int = 2,
        retry_backoff: float = 0.5,
        max_rate_limit_requeues: int = 5,
        pause_after_site_failures: int = 5,
        memory_soft_limit_mb: float | None = 400.0,
        memory_hard_limit_mb: float | None = 800.0,
        memory_check_interval: float = 2.0,
        recycle_browser_after: int = 50,
        browser_path: str | None = None,
        browser_mode: str = "auto",
        extra_browser_args: Sequence[str] = (),
        node_options: str = DEFAULT_NODE_OPTIONS,
        browser_nice: int = 10,
        node_compile_cache: str | None = None,
        nav_timeout: float = 30.0,
        download_timeout: float = 60.0,
        startup_timeout: float = 30.0,
        task_source: TaskSource | None = None,
        on_event: Callable[[PoolEvent], None] | None = None,
        keep_records: bool = True,
    ) -> None:
        self._pool_size = check_pool_size(pool_size)
        self._keep_records = keep_records
        if headless_config is None:
            headless_config = HeadlessConfiguration()
        if not isinstance(headless_config, HeadlessConfiguration):
            raise TypeError("headless_config must be a HeadlessConfiguration, got "
                            f"{type(headless_config).__name__}")
        if profile_manager is not None and not isinstance(profile_manager, ProfileManager):
            raise TypeError("profile_manager must be a ProfileManager")
        if not max_task_timeout or max_task_timeout <= 0:
            raise ValueError("max_task_timeout must be a positive number of seconds")
        self._options = PoolOptions(
            max_task_timeout_s=float(max_task_timeout), startup_timeout_s=startup_timeout,
            retry_limit=retry_limit, retry_backoff_s=retry_backoff,
            max_rate_limit_requeues=max_rate_limit_requeues,
            pause_after_site_failures=pause_after_site_failures,
            memory_soft_limit_mb=memory_soft_limit_mb,
            memory_hard_limit_mb=memory_hard_limit_mb,
            memory_check_interval_s=memory_check_interval)
        check_niceness(browser_nice)
        self._headless = headless_config.effective_headless()
        self.headless_config = headless_config
        self.profile_manager = profile_manager or ProfileManager()
        split_process_fn(process_fn)  # fail now, not in every worker (no import here)
        self._spec_args: dict[str, Any] = dict(
            process_fn=process_fn, output_root=os.path.abspath(output_root),
            evidence_dir=os.path.join(os.path.abspath(output_root), "_evidence"), site=site,
            nav_timeout_s=nav_timeout, download_timeout_s=download_timeout,
            launch_timeout_s=min(startup_timeout, 30.0),
            recycle_browser_after=recycle_browser_after, node_options=node_options,
            browser_nice=browser_nice,
            node_compile_cache=default_node_compile_cache()
            if node_compile_cache is None else node_compile_cache)
        self._browser_path = browser_path
        self._browser_args = worker_browser_args(browser_mode, extra_browser_args)
        self._site = site
        self._task_source = task_source
        self._cond = threading.Condition(threading.RLock())
        self._states = PoolStateMachine()
        self._bus = EventBus(on_event)
        self._book = RunBook(keep_done=self._keep_records)
        self._dispatcher: Dispatcher | None = None
        self._source: TaskSource | None = None
        self._last_stop_clean = True
        self._stop_in_progress = False

    # -- state ---------------------------------------------------------------------------
    @property
    def status(self) -> PoolStatus:
        return self._states.state

    def _set_state(self, new: PoolStatus, reason: str = "",
                   pause: Pause | None = None) -> None:
        with self._cond:
            old = self._states.transition(new, reason)
            self._bus.emit(StateChanged(old, new, reason, pause))
            self._cond.notify_all()

    # -- start ---------------------------------------------------------------------------
    def start_processing(self, po_list: list[dict] | None = None, *,
                         batch: str = "default") -> bool:
        """Validate the POs, start the workers and begin processing.

        Args:
            po_list: PO dicts (po_number, supplier, url, amount; more keys are kept).
                None pulls from the constructor's task_source instead.
            batch: the batch name the job files documents under.

        Raises:
            RuntimeError: the pool is not IDLE.
            ValueError: empty list or invalid PO (the message names index and field).
            ProfileCreationError: a worker's temp root could not be set up.
            WorkerStartupError: a worker could not start (nothing is left behind).
        """
        with self._cond:
            if self.status is not PoolStatus.IDLE:
                raise RuntimeError(f"cannot start: the pool is {self.status}")
            tasks = tasks_from_po_list(po_list, batch=batch, site=self._site) if (
                po_list is not None) else []
            if po_list is None and self._task_source is None:
                raise ValueError("po_list is required (no task_source was configured)")
            spec = self._worker_spec()
            self._set_state(PoolStatus.STARTING)
            self._book = RunBook(keep_done=self._keep_records)
            self._book.add(tasks, time.monotonic())
            source = self._source = (InMemoryTaskSource(tasks) if po_list is not None
                                     else self._task_source)
            assert source is not None
            roots = self._create_roots()
            dispatcher = self._dispatcher = Dispatcher(
                cond=self._cond, states=self._states, set_state=self._set_state,
                book=self._book, bus=self._bus, options=self._options, spec=spec,
                profiles=self.profile_manager, source=source, initial_roots=roots)
            source.set_wakeup(dispatcher.wake)
            dispatcher.start()
            self._wait_for_workers(dispatcher)
            self._set_state(PoolStatus.RUNNING)
            self._book.dispatch_open_at = time.monotonic()
        dispatcher.wake()
        return True

    def _worker_spec(self) -> WorkerSpec:
        return WorkerSpec(browser_path=find_browser(self._browser_path),
                          browser_args=self._browser_args, headless=self._headless,
                          owner_pid=os.getpid(), **self._spec_args)

    def _create_roots(self) -> list[WorkerRoot]:
        try:
            return self.profile_manager.create_roots(self._pool_size)
        except Exception as exc:
            self._set_state(PoolStatus.ERROR, f"profile set-up failed: {exc}")
            if isinstance(exc, ProfileCreationError):
                raise
            raise ProfileCreationError(f"profile set-up failed: {exc}") from exc

    def _wait_for_workers(self, dispatcher: Dispatcher) -> None:
        reason = dispatcher.wait_until_ready(self._pool_size)
        if not reason:
            return
        is_profile = dispatcher.startup_failure_is_profile
        if self.status is not PoolStatus.ERROR:
            self._set_state(PoolStatus.ERROR, reason)
        if is_profile:
            raise ProfileCreationError(reason)
        raise WorkerStartupError(reason)

    def submit(self, po_list: list[dict], *, batch: str = "default") -> int:
        """Add POs to a running in-memory batch; return how many were added."""
        with self._cond:
            source = self._source
            if self.status not in (PoolStatus.RUNNING, PoolStatus.PAUSED) or not isinstance(
                    source, InMemoryTaskSource):
                raise RuntimeError("submit() needs a running pool started with a po_list")
            tasks = tasks_from_po_list(po_list, batch=batch, site=self._site,
                                       first_key=len(self._book.tracks))
            clash = self._book.known_po_numbers(tasks)
            if clash:
                raise ValueError(f"po_number already in batch {batch!r}: {clash[0]}")
            self._book.add(tasks, time.monotonic())
        source.add(tasks)
        return len(tasks)

    # -- stop ----------------------------------------------------------------------------
    def stop_processing(self, timeout: float = 30) -> bool:
        """Stop gracefully; kill workers still busy after `timeout` seconds.

        Workers finish their current PO, then stop; every temp root is removed; POs not
        processed get CANCELLED records. Returns whether all stopped cleanly in time.
        A second concurrent call waits for the first and returns its outcome.

        Raises:
            RuntimeError: the pool is IDLE or in ERROR (nothing to stop; use reset()).
        """
        with self._cond:
            if self._stop_in_progress:
                self._cond.wait_for(lambda: not self._stop_in_progress, timeout=timeout + 60)
                return self._last_stop_clean
            if self.status is PoolStatus.STARTING:
                self._cond.wait_for(lambda: self.status is not PoolStatus.STARTING,
                                    timeout=self._options.startup_timeout_s + 10)
            dispatcher = self._dispatcher
            if dispatcher is not None and self.status in (PoolStatus.RUNNING, PoolStatus.PAUSED):
                dispatcher.request_stop(timeout)  # from now on nothing is dispatched
                if self.status is PoolStatus.PAUSED:
                    self._set_state(PoolStatus.RUNNING, "stopping")
            self._set_state(PoolStatus.STOPPING)
            self._stop_in_progress = True
        try:
            return self._finish_stop(dispatcher, timeout)
        finally:
            with self._cond:
                self._stop_in_progress = False
                self._cond.notify_all()

    def _finish_stop(self, dispatcher: Dispatcher | None, timeout: float) -> bool:
        clean = True
        if dispatcher is not None:
            dispatcher.join(timeout + 30)
            clean = dispatcher.stop_clean and not dispatcher.is_alive()
            if dispatcher.is_alive():
                log.error("the dispatcher did not end in time; aborting it")
                dispatcher.abort("stop timed out")
                dispatcher.join(30)
        for path in self.profile_manager.our_roots():
            clean = False
            self.profile_manager.remove_root(path)
        with self._cond:
            self._last_stop_clean = clean
            if self.status is PoolStatus.STOPPING:
                self._set_state(PoolStatus.IDLE, "stopped" if clean else "stopped (forced)")
        self._bus.flush()
        return clean

    def reset(self) -> None:
        """Recover from ERROR: clean up leftovers and go back to IDLE."""
        with self._cond:
            dispatcher = self._dispatcher
            if self.status is not PoolStatus.ERROR:
                raise RuntimeError(f"reset() needs the ERROR state, the pool is {self.status}")
        if dispatcher is not None:
            dispatcher.abort("reset")
            dispatcher.join(30)
        for path in self.profile_manager.our_roots():
            self.profile_manager.remove_root(path)
        self._set_state(PoolStatus.IDLE, "reset")

    # -- pause, resume, scale ------------------------------------------------------------
    def pause_processing(self) -> bool:
        """Let workers finish their current PO and hand out no new ones."""
        with self._cond:
            pause = Pause(PauseReason.REQUESTED)
            self._set_state(PoolStatus.PAUSED, str(pause), pause)
            if self._dispatcher is not None:
                self._dispatcher.pause(pause)
        return True

    def resume_processing(self) -> bool:
        """Resume a paused pool (RuntimeError when not paused)."""
        with self._cond:
            if self.status is not PoolStatus.PAUSED:
                raise RuntimeError(f"cannot resume: the pool is {self.status}, not PAUSED")
            self._set_state(PoolStatus.RUNNING, "resumed")
            self._book.dispatch_open_at = time.monotonic()
            if self._dispatcher is not None:
                self._dispatcher.resume()
        return True

    def scale_workers(self, new_size: int, *, wait: bool = True,
                      timeout: float | None = None) -> bool:
        """Change the number of workers (1-8).

        Up adds workers with fresh temp roots; down retires workers after their
        current PO. With `wait`, returns whether the pool reached the size in time.
        In IDLE this only sets the size of the next run.
        """
        size = check_pool_size(new_size)
        with self._cond:
            if self.status is PoolStatus.IDLE:
                self._pool_size = size
                return True
            dispatcher = self._dispatcher
            if self.status not in (PoolStatus.RUNNING, PoolStatus.PAUSED) or dispatcher is None:
                raise RuntimeError(f"cannot scale: the pool is {self.status}")
            self._pool_size = size
            dispatcher.set_target(size)
        if not wait:
            return True
        limit = timeout if timeout is not None else (
            self._options.max_task_timeout_s + self._options.startup_timeout_s)
        with self._cond:
            return self._cond.wait_for(
                lambda: dispatcher.at_size(size) or dispatcher.finished.is_set(),
                timeout=limit) and dispatcher.at_size(size)

    # -- status and results --------------------------------------------------------------
    def get_status(self) -> dict[str, Any]:
        """Return the status keys listed in docs/worker_pool.md (get_status)."""
        with self._cond:
            dispatcher = self._dispatcher
            running = dispatcher is not None and not dispatcher.finished.is_set()
            book = self._book
            source = self._source
            pause = dispatcher.paused_for if running and dispatcher and (
                self.status is PoolStatus.PAUSED) else None
            return {
                "pool_status": self.status,
                "state_reason": self._states.reason,
                "pause_reason": str(pause) if pause else "",
                "pause": pause,
                "pool_size": self._pool_size,
                "active_workers": dispatcher.ready_workers() if running and dispatcher else 0,
                "tasks_pending": source.pending() if source is not None and running else 0,
                "tasks_active": book.active,
                "tasks_completed": book.succeeded,
                "tasks_failed": book.failed,
                "tasks_cancelled": book.cancelled,
                "tasks_total": book.total,
                "worker_details": dispatcher.worker_details() if running and dispatcher
                else [],
                "performance_metrics": book.metrics(),
            }

    def get_results(self) -> tuple[int, int, dict[str, Any]]:
        """Return (successful, failed, performance data); callable at any time."""
        with self._cond:
            book = self._book
            data = book.metrics()
            data.update(cancelled=book.cancelled, active=book.active,
                        total=book.total,
                        pending=sum(1 for t in book.tracks.values() if t.state == "pending"))
            return book.succeeded, book.failed, data

    def get_records(self) -> list[PORecord]:
        """Return one record per PO of the current (or last) run, in submission order."""
        with self._cond:
            return [self._book.record_of(t) for t in self._book.tracks.values()]

    # -- waiting and signals -------------------------------------------------------------
    def wait_until_done(self, timeout: float) -> bool:
        """Wait until every known PO has a final record (True) or `timeout` passes."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._book.total > 0 and all(
                    t.state == "done" for t in self._book.tracks.values()), timeout=timeout)

    def wait_for_status(self, status: PoolStatus, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.status is status, timeout=timeout)

    def install_signal_handlers(self, stop_timeout: float = 30) -> None:
        """Make SIGTERM/SIGINT stop the pool gracefully (call from the main thread)."""

        def handler(signum: int, frame: Any) -> None:
            log.info("signal %s: stopping the pool", signum)
            threading.Thread(target=self._stop_quietly, args=(stop_timeout,),
                             name="pool-signal-stop").start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _stop_quietly(self, timeout: float) -> None:
        try:
            self.stop_processing(timeout)
        except RuntimeError as exc:
            log.info("signal stop: %s", exc)
