"""The supervisor thread: one per run, the only code that talks to worker processes.

    task source ──claim──▶ Supervisor ──Task──▶ worker pipe ──▶ worker process
                                ▲ ◀──Ready/TaskReceived/Phase/TaskDone──┘
                                │ ◀──process sentinel (a worker died)
    WorkerPool (public calls) ──wake-up pipe──┘      memory monitor thread (PSS)

`run()` waits on the wake-up pipe, every worker's result pipe and every worker's
process sentinel together (multiprocessing.connection.wait), like CPython's
concurrent.futures.process, so a dead worker is noticed at once. Each turn of the loop
is a list of small steps. Slow work (claims from a DB source, spawning, killing and
deleting temp roots, telling the source about outcomes) happens outside the lock, so
get_status() never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from typing import Any

from pool_core.config import PoolOptions, WorkerSpec
from pool_core.errors import ProfileCreationError
from pool_core.events import (
    EventBus,
    Heartbeat,
    PhaseChanged,
    POFinished,
    PORecord,
    PORequeued,
    POStarted,
    WorkerStarted,
    WorkerStopped,
)
from pool_core.handles import WorkerHandle, lost_task_result, receive_all
from pool_core.messages import POStatus, Task, TaskResult
from pool_core.process_tree import kill_tree, trees_pss_mb
from pool_core.profiles import ProfileManager, WorkerRoot
from pool_core.reasons import Pause, PauseReason, Reason, is_site_failure
from pool_core.records import RunBook, Track
from pool_core.state import PoolStateMachine, PoolStatus
from pool_core.task_source import TaskSource
from pool_core.worker import (
    EXIT_BROWSER_DIED,
    Phase,
    Ready,
    StartupFailed,
    TaskDone,
    TaskReceived,
    process_context,
    start_fork_server,
    worker_main,
)

log = logging.getLogger(__name__)
MAX_START_FAILURES = 5


@dataclass(frozen=True)
class _FailedAttempt:
    """An attempt that ended in a requeue: what PORequeued tells of it."""

    result: TaskResult
    worker_id: int
    seconds: float


class Supervisor(threading.Thread):
    """Runs one start..stop cycle of the pool; see the module docstring."""

    def __init__(self, *, cond: threading.Condition, states: PoolStateMachine,
                 set_state: Callable[[PoolStatus, str, Pause | None], None], book: RunBook,
                 bus: EventBus, options: PoolOptions, spec: WorkerSpec, profiles: ProfileManager,
                 source: TaskSource, initial_roots: list[WorkerRoot]) -> None:
        super().__init__(name="pool-supervisor", daemon=True)
        self.cond = cond
        self.states = states
        self.set_state = set_state
        self.book = book
        self.bus = bus
        self.options = options
        self.spec = spec
        self.profiles = profiles
        self.source = source
        self.initial_roots = initial_roots
        self.target_size = len(initial_roots)
        self.workers: dict[int, WorkerHandle] = {}
        self.slot_restarts: dict[int, int] = {}
        self.replace_slots: list[int] = []
        self.stop_requested = False
        self.stop_deadline = 0.0
        self.stop_clean = True
        self.drain_due = False
        self.fatal = ""
        self.startup_failure = ""
        self.startup_failure_is_profile = False
        self.pause: Pause | None = None  # why the pool is PAUSED
        self.site_failures = 0
        self.start_failures = 0
        self.next_spawn_at = 0.0
        self.finished = threading.Event()
        self._outbox: list[PORecord] = []
        self._cleanups: list[Future[Any]] = []
        self._janitor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool-janitor")
        self._mp = process_context()
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()
        self._wake_closed = False
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._monitor = threading.Thread(target=self._monitor_memory, name="pool-memory",
                                         daemon=True)

    # -- called by WorkerPool (any thread) -----------------------------------------------
    def wake(self) -> None:
        # Never write after _shut_down closed the pipe: the fd number may be reused.
        with self._wake_lock, contextlib.suppress(OSError):  # OSError: pipe full, awake
            if not self._wake_closed:
                os.write(self._wake_w, b"x")

    def request_stop(self, timeout: float) -> None:
        """Finish current POs, stop workers, kill those still busy after `timeout`."""
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

    def ready_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.state != "starting")

    def worker_details(self) -> list[dict[str, Any]]:
        return [{
            "id": w.slot, "pid": w.pid, "state": w.state if not w.leaving else "stopping",
            "current_po": w.task.po_number if w.task else None, "phase": w.phase,
            "started_at": w.started_wall, "tasks_done": w.tasks_done, "restarts": w.restarts,
            "memory_mb": round(w.memory_mb, 1),
        } for w in sorted(self.workers.values(), key=lambda w: w.slot)]

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        self._monitor.start()
        try:
            start_fork_server()
            for root in self.initial_roots:
                self._spawn(root.worker_id, root)
            while not self._turn():
                pass
        except BaseException as exc:
            log.exception("pool supervisor crashed")
            with self.cond:
                self.fatal = self.fatal or f"supervisor crashed: {exc!r}"
        finally:
            self._shut_down()

    def _turn(self) -> bool:
        """One turn of the loop; return True when the run is over."""
        ready = wait(self._waitables(), timeout=self._timeout())
        self._drain_wakeups()
        inbox = self._read_inbox(ready)
        with self.cond:
            self._apply_inbox(inbox)
            dead = self._collect_dead()
            self._enforce_deadlines()
            self._handle_stop()
            self._retire_surplus()
            spawns = self._plan_spawns()
            idle = self._dispatchable()
            outbox, self._outbox = self._outbox, []
            over = bool(self.fatal) or (self.stop_requested and not self.workers
                                        and not self.drain_due)
            self.cond.notify_all()
        if idle:  # first: an idle worker waits for nothing else
            self._dispatch(idle)
        for handle in dead:
            self._cleanup_later(handle)
        self._tell_source(outbox)
        if self.drain_due:
            self._drain_source()
        for slot in spawns:
            self._spawn(slot, None)
        return over

    def _waitables(self) -> list[Any]:
        with self.cond:
            handles = list(self.workers.values())
        return ([self._wake_r] + [w.conn for w in handles]
                + [w.process.sentinel for w in handles])

    def _timeout(self) -> float:
        now = time.monotonic()
        timeout = 1.0
        with self.cond:
            for w in self.workers.values():
                if w.state == "busy" and not w.kill_reason:
                    timeout = min(timeout, w.task_sent + self.options.max_task_timeout_s - now)
            if self.stop_requested and any(not w.kill_reason for w in self.workers.values()):
                timeout = min(timeout, self.stop_deadline - now)
            if any(w.state == "idle" for w in self.workers.values()):
                due = self.source.next_ready_at()
                timeout = min(timeout, self.options.poll_interval_s,
                              due - now if due is not None else 1.0)
        return max(0.0, timeout) + 0.001

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _read_inbox(self, ready: list[Any]) -> list[tuple[WorkerHandle, Any]]:
        inbox: list[tuple[WorkerHandle, Any]] = []
        with self.cond:
            handles = [w for w in self.workers.values() if w.conn in ready]
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
        self.start_failures = 0
        steps = tuple((name, round(at - handle.spawned_at, 3)) for name, at in msg.steps)
        self.bus.emit(WorkerStarted(handle.slot, msg.pid, round(startup, 3), handle.restarts,
                                    steps))
        if self.stop_requested or handle.leaving:
            self._send_stop(handle)

    def _on_task_done(self, handle: WorkerHandle, msg: TaskDone) -> None:
        task = handle.task
        handle.task = None
        handle.state = "idle"
        handle.phase = ""
        handle.idle_since = msg.at
        handle.tasks_done += 1
        if task is not None and task.key == msg.result.key:
            self._settle(task, msg.result, msg.seconds, handle.slot)
        if msg.exiting:
            handle.leaving = handle.leaving or "recycle"
        if self.stop_requested or handle.leaving:
            self._send_stop(handle)

    # -- outcomes ------------------------------------------------------------------------
    def _settle(self, task: Task, result: TaskResult, seconds: float, worker_id: int) -> None:
        """Requeue or finish a PO after one attempt (by `worker_id`, in `seconds`)."""
        now = time.monotonic()
        track = self.book.track_for(task, now)
        failed = _FailedAttempt(result, worker_id, seconds)
        self.book.attempt_ended(track, seconds)
        self._count_site_failure(result)
        if result.status is POStatus.LOGIN_REQUIRED and not self.stop_requested:
            self._requeue(track, failed, 0.0)
            self._auto_pause(Pause(PauseReason.LOGIN_REQUIRED,
                                   result.message or "the session expired"))
            return
        if self.stop_requested and (result.retryable or result.status is POStatus.LOGIN_REQUIRED):
            result = replace(result, status=POStatus.CANCELLED, reason=Reason.STOPPED,
                             message=f"stopped before a retry ({result.reason})")
        elif result.reason == Reason.BROWSER_LOST_BEFORE_START and track.free_requeues < 2:
            track.free_requeues += 1  # not the PO's fault; bounded all the same
            self._requeue(track, failed, 0.0)
            return
        elif result.retry_after is not None and (
                track.rate_limited < self.options.max_rate_limit_requeues):
            track.rate_limited += 1
            self._requeue(track, failed, max(0.0, result.retry_after))
            return
        elif result.retryable and track.retries < self.options.retry_limit:
            track.retries += 1
            self._requeue(track, failed, self.options.retry_backoff_s)
            return
        self._finish(track, result)

    def _requeue(self, track: Track, failed: _FailedAttempt, delay: float) -> None:
        task = replace(track.task, attempt=track.task.attempt + 1)
        track.task = task
        track.ready_at = time.monotonic() + delay
        self.source.retry(task, delay)
        self.bus.emit(PORequeued(task.key, task.po_number, failed.result.reason,
                                 task.attempt - 1, delay, worker_id=failed.worker_id,
                                 seconds=round(failed.seconds, 3),
                                 message=failed.result.message))

    def _finish(self, track: Track, result: TaskResult) -> None:
        record = self.book.finish(track, result)
        self._outbox.append(record)
        self.bus.emit(POFinished(record))

    def _count_site_failure(self, result: TaskResult) -> None:
        if is_site_failure(result.reason):
            self.site_failures += 1
            limit = self.options.pause_after_site_failures
            if limit and self.site_failures >= limit:
                self._auto_pause(Pause(PauseReason.SITE_FAILING, (
                    f"{self.site_failures} consecutive site-level failures, last "
                    f"{result.reason}: {result.message}")[:486]))
        elif result.status is not POStatus.LOGIN_REQUIRED:
            self.site_failures = 0

    def _auto_pause(self, pause: Pause) -> None:
        if self.states.state is PoolStatus.RUNNING and not self.stop_requested:
            self.pause = pause
            self.set_state(PoolStatus.PAUSED, str(pause), pause)

    # -- dead workers --------------------------------------------------------------------
    def _collect_dead(self) -> list[WorkerHandle]:
        dead = [w for w in self.workers.values() if not w.process.is_alive()]
        for handle in dead:
            for msg in receive_all(handle.conn):  # a result sent just before dying
                self._apply_inbox([(handle, msg)])
            self._on_worker_exit(handle)
        return dead

    def _on_worker_exit(self, handle: WorkerHandle) -> None:
        handle.process.join(0)
        exitcode = handle.process.exitcode
        del self.workers[handle.slot]
        if handle.task is not None:
            self._settle(handle.task, lost_task_result(handle, exitcode),
                         time.monotonic() - handle.task_sent, handle.slot)
        if handle.state == "starting":
            self._on_startup_failure(handle, exitcode)
        reason, crashed = _exit_reason(handle, exitcode)
        if self.stop_requested and (handle.kill_reason or exitcode != 0):
            self.stop_clean = False  # killed on the way out, by us or by someone else
        if handle.leaving not in ("scale_down", "stop") and not self.stop_requested:
            self.replace_slots.append(handle.slot)
            self.slot_restarts[handle.slot] = self.slot_restarts.get(handle.slot, 0) + 1
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
        self.start_failures += 1
        self.next_spawn_at = time.monotonic() + min(10.0, float(self.start_failures))
        if self.start_failures >= MAX_START_FAILURES and not self.ready_workers():
            self.fatal = f"workers keep failing to start: {message}"

    def _cleanup_later(self, handle: WorkerHandle) -> None:
        def cleanup() -> None:
            kill_tree(handle.pid, handle.root.path)
            self.profiles.remove_root(handle.root.path)
            handle.conn.close()

        self._cleanups.append(self._janitor.submit(cleanup))

    # -- deadlines, stopping, scaling, spawning ------------------------------------------
    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.kill_reason:
                continue
            if w.state == "busy" and now - w.task_sent >= self.options.max_task_timeout_s:
                self._kill(w, Reason.TASK_TIMEOUT)
            elif w.state == "starting" and now - w.spawned_at >= self.options.startup_timeout_s:
                self._kill(w, f"not ready after {self.options.startup_timeout_s:.0f}s")

    def _kill(self, handle: WorkerHandle, reason: str) -> None:
        handle.kill_reason = reason
        self._cleanups.append(self._janitor.submit(kill_tree, handle.pid, handle.root.path))

    def _handle_stop(self) -> None:
        if self.fatal:
            for w in self.workers.values():
                if not w.kill_reason:
                    self._kill(w, "pool error")
            return
        if not self.stop_requested:
            return
        for w in self.workers.values():
            if w.state == "idle":
                self._send_stop(w)
        if time.monotonic() >= self.stop_deadline:
            for w in self.workers.values():
                if not w.kill_reason:
                    self.stop_clean = False
                    self._kill(w, Reason.STOP_TIMEOUT)

    def _send_stop(self, handle: WorkerHandle) -> None:
        if not handle.stop_sent:
            handle.stop_sent = True
            handle.leaving = handle.leaving or "stop"
            handle.send(None)

    def _retire_surplus(self) -> None:
        live = [w for w in self.workers.values() if not w.leaving]
        excess = len(live) - self.target_size
        order = {"idle": 0, "starting": 1, "busy": 2}
        for w in sorted(live, key=lambda w: (order[w.state], -w.slot))[:max(0, excess)]:
            w.leaving = "scale_down"
            if w.state == "idle":
                self._send_stop(w)

    def _plan_spawns(self) -> list[int]:
        if self.stop_requested or self.fatal or self.startup_failure:
            return []
        live = [w for w in self.workers.values() if w.leaving in ("", "recycle")]
        missing = self.target_size - len(live)
        if missing <= 0:
            self.replace_slots.clear()
            return []
        if time.monotonic() < self.next_spawn_at:
            return []
        slots = [s for s in self.replace_slots if s not in self.workers][:missing]
        self.replace_slots = [s for s in self.replace_slots if s not in slots]
        slot = 0
        while len(slots) < missing:
            if slot not in self.workers and slot not in slots:
                slots.append(slot)
            slot += 1
        return slots

    def _spawn(self, slot: int, root: WorkerRoot | None) -> None:
        try:
            root = root or self.profiles.create_root(slot)
            parent_conn, child_conn = self._mp.Pipe()
            process = self._mp.Process(target=worker_main, name=f"pool-worker-{slot}",
                                       args=(slot, self.spec, root, child_conn), daemon=True)
            spawned = time.monotonic()
            process.start()
            child_conn.close()
        except Exception as exc:
            log.exception("cannot start worker %s", slot)
            if root is not None:
                self.profiles.remove_root(root.path)
            with self.cond:
                if self.states.state is PoolStatus.STARTING:
                    self.startup_failure = self.startup_failure or f"worker {slot}: {exc}"
                    self.startup_failure_is_profile = isinstance(exc, ProfileCreationError)
                else:
                    self.start_failures += 1
                    self.replace_slots.append(slot)
                    self.next_spawn_at = time.monotonic() + min(10.0, self.start_failures)
            return
        with self.cond:
            self.workers[slot] = WorkerHandle(slot=slot, process=process, conn=parent_conn,
                                              root=root, spawned_at=spawned,
                                              restarts=self.slot_restarts.get(slot, 0))

    # -- dispatch ------------------------------------------------------------------------
    def _dispatchable(self) -> int:
        if self.states.state is not PoolStatus.RUNNING or self.stop_requested or self.fatal:
            return 0
        return sum(1 for w in self.workers.values() if w.state == "idle" and not w.leaving)

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
            idle = sorted((w for w in self.workers.values()
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
            now = time.monotonic()
            for task in tasks:
                track = self.book.track_for(task, now)
                self._finish(track, TaskResult(key=task.key, po_number=task.po_number,
                                               status=POStatus.CANCELLED, reason=Reason.STOPPED,
                                               message="the pool stopped before this PO"))
            outbox, self._outbox = self._outbox, []
        self._tell_source(outbox)

    def _tell_source(self, records: list[PORecord]) -> None:
        for record in records:
            try:
                self.source.finish(record)
            except Exception:
                log.exception("task source failed to record %s", record.po_number)

    # -- memory --------------------------------------------------------------------------
    def _monitor_memory(self) -> None:
        while not self.finished.wait(self.options.memory_check_interval_s):
            with self.cond:
                handles = [w for w in self.workers.values() if w.state != "starting"]
            pss = trees_pss_mb([w.pid for w in handles if w.pid])
            readings = [(w, pss[w.pid]) for w in handles if w.pid]
            with self.cond:
                for handle, mb in readings:
                    self._apply_memory(handle, mb)
            self.wake()

    def _apply_memory(self, handle: WorkerHandle, mb: float) -> None:
        if self.workers.get(handle.slot) is not handle or handle.kill_reason:
            return
        handle.memory_mb = mb
        hard, soft = self.options.memory_hard_limit_mb, self.options.memory_soft_limit_mb
        if hard and mb >= hard:
            log.warning("worker %s uses %.0f MB > hard limit %.0f MB: killed",
                        handle.slot, mb, hard)
            self._kill(handle, Reason.MEMORY_LIMIT)
        elif soft and mb >= soft and not handle.leaving:
            handle.leaving = "recycle"
            if handle.state == "idle":
                self._send_stop(handle)
        self.bus.emit(Heartbeat(handle.slot, handle.pid or 0, round(mb, 1), handle.state,
                                handle.tasks_done))

    # -- the end -------------------------------------------------------------------------
    def _shut_down(self) -> None:
        with self.cond:
            handles = list(self.workers.values())
            for w in handles:
                if not w.kill_reason:
                    self._kill(w, "pool error" if self.fatal else Reason.STOP_TIMEOUT)
        for handle in handles:
            handle.process.join(5)
        with self.cond:
            for handle in handles:
                if self.workers.get(handle.slot) is handle:
                    self._on_worker_exit(handle)
                    self._cleanup_later(handle)
            if self.fatal:
                self._return_unfinished()
            self.finished.set()
        for future in list(self._cleanups):
            future.result()
        self._janitor.shutdown(wait=True)
        self._monitor.join(10)
        with self._wake_lock:
            self._wake_closed = True
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
        with self.cond:
            self.book.ended = time.monotonic()
            if self.fatal and self.states.state is not PoolStatus.ERROR:
                self.set_state(PoolStatus.ERROR, self.fatal, None)
            self.cond.notify_all()

    def _return_unfinished(self) -> None:
        """On a pool error, POs in flight go back to the source: pending, not lost."""
        for track in self.book.tracks.values():
            if track.state == "active":
                track.state = "pending"
                self.book.active -= 1
                self.source.retry(track.task, 0.0)


# Kills that end a worker abnormally (WorkerStopped.crashed); the others (a pool error,
# a start-up that took too long) are the engine tidying up.
CRASH_KILLS = (Reason.TASK_TIMEOUT, Reason.MEMORY_LIMIT, Reason.STOP_TIMEOUT)


def _exit_reason(handle: WorkerHandle, exitcode: int | None) -> tuple[str, bool]:
    """Why a worker ended, and whether it crashed. Leaving (stop, recycle, scale-down)
    only explains a clean exit: a worker killed from outside on its way out crashed."""
    if handle.kill_reason:
        return handle.kill_reason, handle.kill_reason in CRASH_KILLS
    if exitcode == EXIT_BROWSER_DIED:
        return Reason.BROWSER_CRASH, True
    if exitcode != 0 or not handle.leaving:
        return f"crashed (exit code {exitcode})", True
    return ("stopped" if handle.leaving == "stop" else handle.leaving), False
