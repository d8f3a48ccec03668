"""Typed, picklable events the pool sends to its host's callback, and per-PO records.

The callback (`WorkerPool(on_event=...)`) runs in the pool's event thread, never in the
dispatcher, so a slow host (DB writes, channel sends) never delays task distribution.
Every event is a frozen dataclass with a `kind` (an EventKind) and `at` (time.time()).
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pool_core.messages import FileRecord, POStatus, SourceReport
from pool_core.reasons import Pause
from pool_core.state import PoolStatus

log = logging.getLogger(__name__)


class EventKind(enum.StrEnum):
    WORKER_STARTED = "worker_started"
    WORKER_STOPPED = "worker_stopped"
    PHASE_CHANGED = "phase_changed"
    HEARTBEAT = "heartbeat"
    PO_STARTED = "po_started"
    PO_REQUEUED = "po_requeued"
    PO_FINISHED = "po_finished"
    STATE_CHANGED = "state_changed"


@dataclass(frozen=True)
class PORecord:
    """Everything known about one PO: final once `status` is set.

    `state` is "pending", "active" or "done"; `attempts` counts every attempt, crash
    re-queues included; `attempt_seconds` lists each attempt's duration.
    """

    key: str
    po_number: str
    supplier: str
    batch: str
    state: str
    status: POStatus | None = None
    reason: str = ""
    message: str = ""
    files: tuple[FileRecord, ...] = ()
    folder: str = ""
    supplier_seen: str = ""
    attempts: int = 0
    worker_id: int | None = None
    attempt_seconds: tuple[float, ...] = ()
    total_seconds: float = 0.0
    steps: tuple[tuple[str, float], ...] = ()
    evidence: tuple[str, ...] = ()
    remote_traceback: str = ""
    finished_at: float | None = None
    sources: tuple[SourceReport, ...] = ()  # where the last attempt looked for files
    blocked_requests: tuple[str, ...] = ()  # its sub-requests aborted off the allow-list

    @property
    def is_success(self) -> bool:
        return self.status is not None and self.status.is_success


@dataclass(frozen=True)
class WorkerStarted:
    worker_id: int
    pid: int
    startup_seconds: float
    restarts: int
    steps: tuple[tuple[str, float], ...] = ()  # seconds from spawn to the end of each step
    kind: EventKind = EventKind.WORKER_STARTED
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class WorkerStopped:
    worker_id: int
    pid: int
    exitcode: int | None
    reason: str  # "stopped", "recycle", "scale_down", "crashed (exit code -9)", a Reason...
    crashed: bool = False  # ended abnormally: died, or killed over its PO (a timeout...)
    kind: EventKind = EventKind.WORKER_STOPPED
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class PhaseChanged:
    worker_id: int
    key: str
    po_number: str
    phase: str
    kind: EventKind = EventKind.PHASE_CHANGED
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Heartbeat:
    worker_id: int
    pid: int
    memory_mb: float
    state: str
    tasks_done: int
    kind: EventKind = EventKind.HEARTBEAT
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class POStarted:
    worker_id: int
    key: str
    po_number: str
    attempt: int
    kind: EventKind = EventKind.PO_STARTED
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class PORequeued:
    key: str
    po_number: str
    reason: str
    attempt: int  # the attempt that failed
    delay: float
    worker_id: int | None = None  # the worker of the failed attempt (idle again now)
    seconds: float = 0.0  # how long the failed attempt took
    message: str = ""  # the failed attempt's message
    # Whether the requeue spent one of the PO's retries (False: a 429's retry-after, a
    # login wall, a browser lost before the PO started).
    charged: bool = True
    kind: EventKind = EventKind.PO_REQUEUED
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class POFinished:
    record: PORecord
    kind: EventKind = EventKind.PO_FINISHED
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class StateChanged:
    old: PoolStatus
    new: PoolStatus
    reason: str
    pause: Pause | None = None  # new is PAUSED: why (reason is its text)
    kind: EventKind = EventKind.STATE_CHANGED
    at: float = field(default_factory=time.time)


PoolEvent = (WorkerStarted | WorkerStopped | PhaseChanged | Heartbeat | POStarted
             | PORequeued | POFinished | StateChanged)


class EventBus:
    """Deliver events to the host's callback from one thread, in order.

    The thread starts on demand and ends after a second without events, so an idle
    pool holds no thread. A callback that raises is logged and does not stop delivery.
    """

    def __init__(self, callback: Callable[[PoolEvent], None] | None) -> None:
        self._callback = callback
        self._queue: queue.SimpleQueue[PoolEvent | threading.Event] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def emit(self, event: PoolEvent) -> None:
        if self._callback is None:
            return
        self._queue.put(event)
        self._ensure_thread()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event emitted so far has been delivered."""
        if self._callback is None or threading.current_thread() is self._thread:
            return True  # the callback itself asked: waiting for ourselves would deadlock
        marker = threading.Event()
        self._queue.put(marker)
        self._ensure_thread()
        return marker.wait(timeout)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pool-events",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        assert self._callback is not None
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._callback(item)
            except Exception:
                log.exception("pool event callback failed on %s", type(item).__name__)
