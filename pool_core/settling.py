"""What one attempt's result means for its PO: requeue it, finish it, or pause the pool.

The Dispatcher hands every attempt that ended (a TaskDone, or a worker lost under its
PO) to its Settler, under the pool's lock. The Settler applies the retry budgets
(retries, HTTP 429 requeues, browsers lost before the PO started), writes final records
into the run book, tells the host (PORequeued, POFinished) and counts site-level
failures in a row, asking the Dispatcher to pause (`on_pause`) after too many or on a
sign-in wall. Final records wait in `outbox` until the Dispatcher, outside the lock,
hands them to the task source (tell_source).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pool_core.config import PoolOptions
from pool_core.events import EventBus, POFinished, PORecord, PORequeued
from pool_core.messages import POStatus, Task, TaskResult
from pool_core.reasons import Pause, PauseReason, Reason, is_site_failure
from pool_core.records import RunBook, Track
from pool_core.task_source import TaskSource

log = logging.getLogger(__name__)
FREE_REQUEUES = 2  # browsers lost before the PO started, not charged to its budget


@dataclass(frozen=True)
class _FailedAttempt:
    """An attempt that ended in a requeue: what PORequeued tells of it."""

    result: TaskResult
    worker_id: int
    seconds: float


class Settler:
    """Settles attempts for one run; not thread-safe (the pool's lock guards it)."""

    def __init__(self, *, book: RunBook, bus: EventBus, source: TaskSource,
                 options: PoolOptions, on_pause: Callable[[Pause], None]) -> None:
        self.book = book
        self.bus = bus
        self.source = source
        self.options = options
        self.on_pause = on_pause
        self.site_failures = 0  # site-level failures in a row (reset by resume())
        self.outbox: list[PORecord] = []

    def settle(self, task: Task, result: TaskResult, seconds: float, worker_id: int, *,
               stopping: bool) -> None:
        """Requeue or finish a PO after one attempt (by `worker_id`, in `seconds`)."""
        now = time.monotonic()
        track = self.book.track_for(task, now)
        failed = _FailedAttempt(result, worker_id, seconds)
        self.book.attempt_ended(track, seconds)
        self._count_site_failure(result)
        if result.status is POStatus.LOGIN_REQUIRED and not stopping:
            self._requeue(track, failed, 0.0, charged=False)
            self.on_pause(Pause(PauseReason.LOGIN_REQUIRED,
                                result.message or "the session expired"))
            return
        if stopping and (result.retryable or result.status is POStatus.LOGIN_REQUIRED):
            result = replace(result, status=POStatus.CANCELLED, reason=Reason.STOPPED,
                             message=f"stopped before a retry ({result.reason})")
        elif (result.reason == Reason.BROWSER_LOST_BEFORE_START
              and track.free_requeues < FREE_REQUEUES):
            track.free_requeues += 1  # not the PO's fault; bounded all the same
            self._requeue(track, failed, 0.0, charged=False)
            return
        elif result.retry_after is not None and (
                track.rate_limited < self.options.max_rate_limit_requeues):
            track.rate_limited += 1
            self._requeue(track, failed, max(0.0, result.retry_after), charged=False)
            return
        elif result.retryable and track.retries < self.options.retry_limit:
            track.retries += 1
            self._requeue(track, failed, self.options.retry_backoff_s)
            return
        self._finish(track, result)

    def cancel_unstarted(self, tasks: list[Task]) -> None:
        """The pool stopped before these POs (drained from the source) ran."""
        now = time.monotonic()
        for task in tasks:
            self._finish(self.book.track_for(task, now), TaskResult(
                key=task.key, po_number=task.po_number, status=POStatus.CANCELLED,
                reason=Reason.STOPPED, message="the pool stopped before this PO"))

    def return_unfinished(self) -> None:
        """On a pool error, POs in flight go back to the source: pending, not lost."""
        for track in self.book.tracks.values():
            if track.state == "active":
                track.state = "pending"
                self.book.active -= 1
                self.source.retry(track.task, 0.0)

    def take_outbox(self) -> list[PORecord]:
        outbox, self.outbox = self.outbox, []
        return outbox

    def tell_source(self, records: list[PORecord]) -> None:
        """Hand final records to the task source (outside the lock: it may be a DB)."""
        for record in records:
            try:
                self.source.finish(record)
            except Exception:
                log.exception("task source failed to record %s", record.po_number)

    def _requeue(self, track: Track, failed: _FailedAttempt, delay: float, *,
                 charged: bool = True) -> None:
        task = replace(track.task, attempt=track.task.attempt + 1)
        track.task = task
        track.ready_at = time.monotonic() + delay
        self.source.retry(task, delay)
        self.bus.emit(PORequeued(task.key, task.po_number, failed.result.reason,
                                 task.attempt - 1, delay, worker_id=failed.worker_id,
                                 seconds=round(failed.seconds, 3),
                                 message=failed.result.message, charged=charged))

    def _finish(self, track: Track, result: TaskResult) -> None:
        record = self.book.finish(track, result)
        self.outbox.append(record)
        self.bus.emit(POFinished(record))

    def _count_site_failure(self, result: TaskResult) -> None:
        if is_site_failure(result.reason):
            self.site_failures += 1
            limit = self.options.pause_after_site_failures
            if limit and self.site_failures >= limit:
                self.on_pause(Pause(PauseReason.SITE_FAILING, (
                    f"{self.site_failures} consecutive site-level failures, last "
                    f"{result.reason}: {result.message}")[:486]))
        elif result.status is not POStatus.LOGIN_REQUIRED:
            self.site_failures = 0
