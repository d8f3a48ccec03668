"""The run book: what happened to every PO of a run, and the run's performance figures.

Not thread-safe on its own: the pool's lock guards it.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

from pool_core.events import PORecord
from pool_core.messages import POStatus, Task, TaskResult


@dataclass
class Track:
    """Mutable bookkeeping of one PO inside the pool."""

    task: Task
    ready_at: float  # time.monotonic() when it became available to a worker
    state: str = "pending"  # pending | active | done
    attempts: int = 0
    retries: int = 0  # requeues charged to the retry budget
    rate_limited: int = 0  # 429 requeues not charged to it
    free_requeues: int = 0  # its worker's browser was gone before the PO started
    worker_id: int | None = None
    attempt_seconds: list[float] = field(default_factory=list)
    first_started: float | None = None
    record: PORecord | None = None


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _new_track(task: Task, now: float) -> Track:
    # A task that arrives on a later attempt (a host's source re-claimed it after the
    # host that held it died) has spent that many retries of its budget already.
    return Track(task=task, ready_at=now, retries=max(0, task.attempt - 1))


class RunBook:
    """Per-PO tracks, final counts and timing samples of one run."""

    def __init__(self, keep_done: bool = True) -> None:
        self.tracks: dict[str, Track] = {}
        self.keep_done = keep_done
        self.forgotten = 0  # finished tracks dropped (keep_done=False)
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.active = 0
        self.started_wall = time.time()
        self.started = time.monotonic()
        self.ended: float | None = None
        self.dispatch_open_at = 0.0  # when the pool last became RUNNING
        self.task_seconds: list[float] = []  # kept sorted
        self.distribution_s: list[float] = []  # kept sorted
        self.startup_s: list[float] = []  # kept sorted

    def add(self, tasks: list[Task], now: float) -> None:
        for task in tasks:
            self.tracks[task.key] = _new_track(task, now)

    def known_po_numbers(self, tasks: list[Task]) -> list[str]:
        """The po_numbers of `tasks` already tracked in the same batch."""
        known = {(t.task.batch, t.task.po_number) for t in self.tracks.values()}
        return [t.po_number for t in tasks if (t.batch, t.po_number) in known]

    def track_for(self, task: Task, now: float) -> Track:
        """Return the track of a task, creating one for tasks a host's source invented."""
        track = self.tracks.get(task.key)
        if track is None:
            track = self.tracks[task.key] = _new_track(task, now)
        return track

    def attempt_started(self, track: Track, task: Task, worker_id: int, now: float) -> None:
        track.task = task
        track.state = "active"
        track.worker_id = worker_id
        track.first_started = track.first_started or now
        self.active += 1

    def attempt_ended(self, track: Track, seconds: float) -> None:
        track.attempts += 1
        track.attempt_seconds.append(round(seconds, 3))
        track.state = "pending"
        self.active -= 1
        bisect.insort(self.task_seconds, seconds)

    def sample_distribution(self, seconds: float) -> None:
        bisect.insort(self.distribution_s, max(0.0, seconds))

    def sample_startup(self, seconds: float) -> None:
        bisect.insort(self.startup_s, seconds)

    def finish(self, track: Track, result: TaskResult) -> PORecord:
        """Make the PO's outcome final and return its record."""
        now = time.monotonic()
        record = PORecord(
            key=track.task.key, po_number=track.task.po_number, supplier=track.task.supplier,
            batch=track.task.batch, state="done", status=result.status, reason=result.reason,
            message=result.message, files=result.files, folder=result.folder,
            supplier_seen=result.supplier_seen, attempts=track.attempts,
            worker_id=track.worker_id, attempt_seconds=tuple(track.attempt_seconds),
            total_seconds=round(now - track.first_started, 3) if track.first_started else 0.0,
            steps=result.steps, evidence=result.evidence,
            remote_traceback=result.remote_traceback, finished_at=time.time(),
            sources=result.sources, blocked_requests=result.blocked_requests)
        track.state = "done"
        if self.keep_done:
            track.record = record
        elif self.tracks.get(track.task.key) is track:
            del self.tracks[track.task.key]
            self.forgotten += 1
        if result.status is POStatus.CANCELLED:
            self.cancelled += 1
        elif result.status.is_success:
            self.succeeded += 1
        else:
            self.failed += 1
        return record

    @property
    def total(self) -> int:
        """POs of the run: those tracked plus those finished and forgotten."""
        return len(self.tracks) + self.forgotten

    def record_of(self, track: Track) -> PORecord:
        if track.record is not None:
            return track.record
        task = track.task
        return PORecord(key=task.key, po_number=task.po_number, supplier=task.supplier,
                        batch=task.batch, state=track.state, attempts=track.attempts,
                        worker_id=track.worker_id, attempt_seconds=tuple(track.attempt_seconds))

    def metrics(self) -> dict[str, Any]:
        end = self.ended if self.ended is not None else time.monotonic()
        elapsed = max(end - self.started, 1e-9)
        done = self.succeeded + self.failed
        mean = sum(self.task_seconds) / len(self.task_seconds) if self.task_seconds else 0.0
        return {
            "elapsed_seconds": round(elapsed, 3),
            "throughput_per_minute": round(done * 60.0 / elapsed, 2),
            "task_seconds_mean": round(mean, 3),
            "task_seconds_p95": round(_percentile(self.task_seconds, 0.95), 3),
            "attempts": len(self.task_seconds),
            "startup_seconds_mean": round(sum(self.startup_s) / len(self.startup_s), 3)
            if self.startup_s else 0.0,
            "startup_seconds_p95": round(_percentile(self.startup_s, 0.95), 3),
            "distribution_latency_ms_p95": round(
                _percentile(self.distribution_s, 0.95) * 1000, 3),
            "distribution_latency_ms_p50": round(
                _percentile(self.distribution_s, 0.5) * 1000, 3),
        }
