"""The dispatcher thread: one per run, the only code that talks to worker processes.

    task source ──claim──▶ Dispatcher ──Task──▶ worker pipe ──▶ worker process
                                ▲ ◀──Ready/TaskReceived/Phase/TaskDone──┘
                                │ ◀──process sentinel (a worker died)
    WorkerPool (public calls) ──wake-up pipe──┘      memory monitor thread (PSS)

`run()` waits on the wake-up pipe, every worker's result pipe and every worker's
process sentinel together (multiprocessing.connection.wait), like the manager thread of
CPython's concurrent.futures.process, so a dead worker is noticed at once. Each turn of
the loop is a list of small steps. Slow work (claims from a DB source, spawning, killing
and deleting temp roots, telling the source about outcomes) happens outside the lock,
so get_status() never waits for it.

State shared with WorkerPool; `cond` (the pool's Condition, on an RLock) guards all of it:

* the pool's state machine (`states`): moved by the pool for public calls, and by the
  dispatcher only through `set_state` (auto-pause, ERROR);
* the run book (`book`, pool_core.records): the dispatcher writes tracks and counts
  through its Settler (pool_core.settling); the pool reads them (get_status, records);
* the Workforce (pool_core.workforce): the live workers' handles (the memory monitor
  writes them too); the pool reads them via ready_workers(), worker_details(), at_size();
* the fields below, written by the interface methods and the loop, read by the pool:
  `target_size`, `stop_requested`, `stop_clean`, `fatal`, `startup_failure`,
  `paused_for`;
* `finished` (an Event, set once the run is over) needs no lock.

The one interface the pool uses to reach the dispatcher (safe from any thread; effect
at the next turn of the loop): `pause()`, `resume()`, `set_target()`, `request_stop()`;
plus `wait_until_ready()` at start-up, `abort()` to end a run in ERROR, and `wake()`
(the task source calls it when work arrives).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from pool_core.config import PoolOptions, WorkerSpec
from pool_core.errors import ProfileCreationError
from pool_core.events import EventBus, PhaseChanged, POStarted, WorkerStarted, WorkerStopped
from pool_core.handles import WorkerHandle, exit_reason, lost_task_result, receive_all
from pool_core.messages import Phase, Ready, StartupFailed, Task, TaskDone, TaskReceived
from pool_core.profiles import ProfileManager, WorkerRoot
from pool_core.reasons import Pause, Reason
from pool_core.records import RunBook
from pool_core.settling import Settler
from pool_core.state import PoolStateMachine, PoolStatus
from pool_core.task_source import TaskSource
from pool_core.wakeup import WakeUpPipe
from pool_core.worker import start_fork_server
from pool_core.workforce import Workforce

log = logging.getLogger(__name__)
MAX_START_FAILURES = 5


class Dispatcher(threading.Thread):
    """Runs one start..stop cycle of the pool; see the module docstring."""

    def __init__(self, *, cond: threading.Condition, states: PoolStateMachine,
                 set_state: Callable[[PoolStatus, str, Pause | None], None], book: RunBook,
                 bus: EventBus, options: PoolOptions, spec: WorkerSpec,
                 profiles: ProfileManager, source: TaskSource,
                 initial_roots: list[WorkerRoot]) -> None:
        super().__init__(name="pool-dispatcher", daemon=True)
        self.cond = cond
        self.states = states
        self.set_state = set_state
        self.book = book
        self.bus = bus
        self.options = options
        self.source = source
        self.initial_roots = initial_roots
        self.crew = Workforce(spec=spec, profiles=profiles, options=options, bus=bus)
        self.settler = Settler(book=book, bus=bus, source=source, options=options,
                               on_pause=self._auto_pause)
        self.target_size = len(initial_roots)
        self.stop_requested = False
        self.stop_deadline = 0.0
        self.stop_clean = True
        self.drain_due = False
        self.fatal = ""
        self.startup_failure = ""
        self.startup_failure_is_profile = False
        self.paused_for: Pause | None = None  # why the pool is PAUSED
        self.finished = threading.Event()
        self._wakeup = WakeUpPipe()
        self._monitor: threading.Thread | None = None

    # -- the interface (WorkerPool, any thread) ------------------------------------------
    def wake(self) -> None:
        self._wakeup.wake()

    def pause(self, pause: Pause) -> None:
        """The pool was paused (the caller moved the state machine): remember why."""
        with self.cond:
            self.paused_for = pause

    def resume(self) -> None:
        """The pool runs again (the caller moved the state machine): forget the pause
        and the site failures counted so far, and dispatch."""
        with self.cond:
            self.paused_for = None
            self.settler.site_failures = 0
        self.wake()

    def set_target(self, size: int) -> None:
        """Grow or shrink to `size` workers (new ones on fresh temp roots; retired ones
        after their current PO)."""
        with self.cond:
            self.target_size = size
        self.wake()

    def request_stop(self, timeout: float) -> None:
        """Finish current POs, stop workers, kill those still busy after `timeout`.

        From the moment of the call nothing more is dispatched."""
        with self.cond:
            self.stop_requested = True
            self.drain_due = True
            self.stop_deadline = time.monotonic() + max(0.0, timeout)
        self.wake()

    def abort(self, reason: str) -> None:
        """Kill every worker and end the run in ERROR."""
        with self.cond:
            self.fatal = self.fatal or reason
        self.wake()

    def wait_until_ready(self, size: int) -> str:
        """During start-up, with `cond` held (waiting releases it): "" once `size`
        workers are ready; else abort the run, wait for its end and say why."""
        deadline = time.monotonic() + self.options.startup_timeout_s + 5.0
        late = ""
        while True:
            if self.startup_failure or self.fatal or not self.is_alive():
                break
            if self.crew.ready() >= size:
                return ""
            self.cond.wait(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                late = "workers did not become ready in time"
                break
        reason = late or self.startup_failure or self.fatal or "dispatcher ended"
        self.abort(reason)
        self.cond.release()  # let the run kill and clean up
        try:
            self.join(30)
        finally:
            self.cond.acquire()
        return reason

    def ready_workers(self) -> int:
        return self.crew.ready()

    def worker_details(self) -> list[dict[str, Any]]:
        return self.crew.details()

    def at_size(self, size: int) -> bool:
        """Whether the target is `size` and exactly that many workers are ready."""
        return self.target_size == size and self.crew.at_size(size)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        self._monitor = self.crew.monitor_memory(self.cond, self.finished, self.wake)
        try:
            start_fork_server()
            for root in self.initial_roots:
                self._spawn(root.worker_id, root)
            while not self._turn():
                pass
        except BaseException as exc:
            log.exception("pool dispatcher crashed")
            with self.cond:
                self.fatal = self.fatal or f"dispatcher crashed: {exc!r}"
        finally:
            self._shut_down()

    def _turn(self) -> bool:
        """One turn of the loop; return True when the run is over."""
        ready = wait(self._waitables(), timeout=self._timeout())
        self._wakeup.drain()
        inbox = self._read_inbox(ready)
        with self.cond:
            self._apply_inbox(inbox)
            dead = self._collect_dead()
            self._enforce_deadlines()
            self._handle_stop()
            self.crew.retire_surplus(self.target_size)
            spawns = self._plan_spawns()
            idle = self._dispatchable()
            outbox = self.settler.take_outbox()
            over = bool(self.fatal) or (self.stop_requested and not self.crew.workers
                                        and not self.drain_due)
            self.cond.notify_all()
        if idle:  # first: an idle worker waits for nothing else
            self._dispatch(idle)
        for handle in dead:
            self.crew.cleanup_later(handle)
        self.settler.tell_source(outbox)
        if self.drain_due:
            self._drain_source()
        for slot in spawns:
            self._spawn(slot, None)
        return over

    def _waitables(self) -> list[Any]:
        with self.cond:
            handles = list(self.crew.workers.values())
        return ([self._wakeup.fileno] + [w.conn for w in handles]
                + [w.process.sentinel for w in handles])

    def _timeout(self) -> float:
        now = time.monotonic()
        timeout = 1.0
        with self.cond:
            workers = self.crew.workers.values()
            for w in workers:
                if w.state == "busy" and not w.kill_reason:
                    timeout = min(timeout, w.task_sent + self.options.max_task_timeout_s - now)
            if self.stop_requested and any(not w.kill_reason for w in workers):
                timeout = min(timeout, self.stop_deadline - now)
            if any(w.state == "idle" for w in workers):
                due = self.source.next_ready_at()
                timeout = min(timeout, self.options.poll_interval_s,
                              due - now if due is not None else 1.0)
        return max(0.0, timeout) + 0.001

    def _read_inbox(self, ready: list[Any]) -> list[tuple[WorkerHandle, Any]]:
        inbox: list[tuple[WorkerHandle, Any]] = []
        with self.cond:
            handles = [w for w in self.crew.workers.values() if w.conn in ready]
        for handle in handles:
            inbox.extend((handle, msg) for msg in receive_all(handle.conn))
        return inbox

    # -- messages from workers -----------------------------------------------------------
    def _apply_inbox(self, inbox: list[tuple[WorkerHandle, Any]]) -> None:
        for handle, msg in inbox:
            if isinstance(msg, Ready):
                self._on_ready(handle, msg)
            elif isinstance(msg, TaskReceived):
                self.book.sample_distribution(msg.at - handle.available_at)
            elif isinstance(msg, Phase) and handle.task is not None:
                handle.phase = msg.phase
                self.bus.emit(PhaseChanged(handle.slot, msg.key, handle.task.po_number,
                                           msg.phase))
            elif isinstance(msg, TaskDone):
                self._on_task_done(handle, msg)
            elif isinstance(msg, StartupFailed):
                handle.startup_error = msg.message
                log.warning("worker %s failed to start: %s\n%s", handle.slot, msg.message,
                            msg.remote_traceback)

    def _on_ready(self, handle: WorkerHandle, msg: Ready) -> None:
        handle.state = "idle"
        handle.idle_since = msg.at
        handle.started_wall = time.time()
        startup = msg.at - handle.spawned_at
        self.book.sample_startup(startup)
        self.crew.start_failures = 0
        steps = tuple((name, round(at - handle.spawned_at, 3)) for name, at in msg.steps)
        self.bus.emit(WorkerStarted(handle.slot, msg.pid, round(startup, 3), handle.restarts,
                                    steps))
        if self.stop_requested or handle.leaving:
            self.crew.send_stop(handle)

    def _on_task_done(self, handle: WorkerHandle, msg: TaskDone) -> None:
        task = handle.task
        handle.task = None
        handle.state = "idle"
        handle.phase = ""
        handle.idle_since = msg.at
        handle.tasks_done += 1
        if task is not None and task.key == msg.result.key:
            self.settler.settle(task, msg.result, msg.seconds, handle.slot,
                                stopping=self.stop_requested)
        if msg.exiting:
            handle.leaving = handle.leaving or "recycle"
        if self.stop_requested or handle.leaving:
            self.crew.send_stop(handle)

    def _auto_pause(self, pause: Pause) -> None:
        """The Settler asks to pause (a sign-in wall, a failing site)."""
        if self.states.state is PoolStatus.RUNNING and not self.stop_requested:
            self.paused_for = pause
            self.set_state(PoolStatus.PAUSED, str(pause), pause)

    # -- dead workers --------------------------------------------------------------------
    def _collect_dead(self) -> list[WorkerHandle]:
        dead = [w for w in self.crew.workers.values() if not w.process.is_alive()]
        for handle in dead:
            for msg in receive_all(handle.conn):  # a result sent just before dying
                self._apply_inbox([(handle, msg)])
            self._on_worker_exit(handle)
        return dead

    def _on_worker_exit(self, handle: WorkerHandle) -> None:
        handle.process.join(0)
        exitcode = handle.process.exitcode
        self.crew.ended(handle, replace=handle.leaving not in ("scale_down", "stop")
                        and not self.stop_requested)
        if handle.task is not None:
            self.settler.settle(handle.task, lost_task_result(handle, exitcode),
                                time.monotonic() - handle.task_sent, handle.slot,
                                stopping=self.stop_requested)
        if handle.state == "starting":
            self._on_startup_failure(handle, exitcode)
        reason, crashed = exit_reason(handle, exitcode)
        if self.stop_requested and (handle.kill_reason or exitcode != 0):
            self.stop_clean = False  # killed on the way out, by us or by someone else
        self.bus.emit(WorkerStopped(handle.slot, handle.pid or 0, exitcode, reason,
                                    crashed=crashed))

    def _on_startup_failure(self, handle: WorkerHandle, exitcode: int | None) -> None:
        message = handle.startup_error or (
            f"worker {handle.slot} exited with code {exitcode} before it was ready")
        if handle.kill_reason:
            message = f"worker {handle.slot}: {handle.kill_reason}"
        if self.states.state is PoolStatus.STARTING:
            self.startup_failure = self.startup_failure or message
            return
        if self.crew.start_failed() >= MAX_START_FAILURES and not self.crew.ready():
            self.fatal = f"workers keep failing to start: {message}"

    # -- deadlines, stopping, spawning ---------------------------------------------------
    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self.crew.workers.values()):
            if w.kill_reason:
                continue
            if w.state == "busy" and now - w.task_sent >= self.options.max_task_timeout_s:
                self.crew.kill(w, Reason.TASK_TIMEOUT)
            elif w.state == "starting" and now - w.spawned_at >= self.options.startup_timeout_s:
                self.crew.kill(w, f"not ready after {self.options.startup_timeout_s:.0f}s")

    def _handle_stop(self) -> None:
        if self.fatal:
            self.crew.kill_all("pool error")
            return
        if not self.stop_requested:
            return
        for w in self.crew.workers.values():
            if w.state == "idle":
                self.crew.send_stop(w)
        if time.monotonic() >= self.stop_deadline:
            for w in self.crew.workers.values():
                if not w.kill_reason:
                    self.stop_clean = False
                    self.crew.kill(w, Reason.STOP_TIMEOUT)

    def _plan_spawns(self) -> list[int]:
        if self.stop_requested or self.fatal or self.startup_failure:
            return []
        return self.crew.plan_spawns(self.target_size)

    def _spawn(self, slot: int, root: WorkerRoot | None) -> None:
        try:
            handle = self.crew.spawn(slot, root)
        except Exception as exc:
            log.exception("cannot start worker %s", slot)
            with self.cond:
                if self.states.state is PoolStatus.STARTING:
                    self.startup_failure = self.startup_failure or f"worker {slot}: {exc}"
                    self.startup_failure_is_profile = isinstance(exc, ProfileCreationError)
                else:
                    self.crew.start_failed(slot)
            return
        with self.cond:
            self.crew.workers[slot] = handle

    # -- dispatch ------------------------------------------------------------------------
    def _dispatchable(self) -> int:
        if self.states.state is not PoolStatus.RUNNING or self.stop_requested or self.fatal:
            return 0
        return sum(1 for w in self.crew.workers.values() if w.state == "idle" and not w.leaving)

    def _dispatch(self, wanted: int) -> None:
        claimed: list[Task] = []
        while len(claimed) < wanted:
            task = self.source.claim()
            if task is None:
                break
            claimed.append(task)
        if not claimed:
            return
        giveback: list[Task] = []
        with self.cond:
            idle = sorted((w for w in self.crew.workers.values()
                           if w.state == "idle" and not w.leaving), key=lambda w: w.idle_since)
            if self._dispatchable() == 0:
                idle = []
            for task in claimed:
                if idle:
                    self._assign(idle.pop(0), task)
                else:
                    giveback.append(task)
        for task in reversed(giveback):
            self.source.retry(task, 0.0)

    def _assign(self, handle: WorkerHandle, task: Task) -> None:
        now = time.monotonic()
        track = self.book.track_for(task, now)
        self.book.attempt_started(track, task, handle.slot, now)
        handle.task = task
        handle.state = "busy"
        handle.phase = "assigned"
        handle.task_sent = now
        handle.available_at = max(handle.idle_since, track.ready_at,
                                  self.book.dispatch_open_at)
        handle.send(task)
        self.bus.emit(POStarted(handle.slot, task.key, task.po_number, task.attempt))

    def _drain_source(self) -> None:
        tasks = self.source.drain()
        with self.cond:
            self.drain_due = False
            self.settler.cancel_unstarted(tasks)
            outbox = self.settler.take_outbox()
        self.settler.tell_source(outbox)

    # -- the end -------------------------------------------------------------------------
    def _shut_down(self) -> None:
        with self.cond:
            handles = list(self.crew.workers.values())
            self.crew.kill_all("pool error" if self.fatal else Reason.STOP_TIMEOUT)
        for handle in handles:
            handle.process.join(5)
        with self.cond:
            for handle in handles:
                if self.crew.workers.get(handle.slot) is handle:
                    self._on_worker_exit(handle)
                    self.crew.cleanup_later(handle)
            if self.fatal:
                self.settler.return_unfinished()
            self.finished.set()
        self.crew.join_cleanups()
        if self._monitor is not None:
            self._monitor.join(10)
        self._wakeup.close()
        with self.cond:
            self.book.ended = time.monotonic()
            if self.fatal and self.states.state is not PoolStatus.ERROR:
                self.set_state(PoolStatus.ERROR, self.fatal, None)
            self.cond.notify_all()
