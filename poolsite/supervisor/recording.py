"""The one place where engine events become database rows and dashboard updates.

`Recorder.on_event` is the WorkerPool's event callback. It turns each event into a
live update for the dashboards at once (cheap: the Broadcaster merges and coalesces)
and queues the database work for its own writer thread, so a slow or locked database
never delays the pool. A PO's result, its attempt and its documents are written in one
transaction, and only while this host still holds the PO's lease: a host that lost
its lease (it stalled past the expiry and another host took the PO) records the
attempt but not the outcome, so a PO ends with one final status and one set of files.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    reset_queries,
    transaction,
)

from pool_core.events import (
    EventKind,
    Heartbeat,
    PhaseChanged,
    PORecord,
    PORequeued,
    POStarted,
    StateChanged,
    WorkerStarted,
    WorkerStopped,
)
from pool_core.messages import POStatus
from pool_core.reasons import TIMEOUT_REASONS
from poolsite.batches.models import Attempt, ControlAction, Document, PurchaseOrder, Status
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.models import PoolEvent

log = logging.getLogger(__name__)
WRITE_ATTEMPTS = 30  # with backoff capped at 10 s: about four minutes


def _worker_text(worker_id: int | None) -> str:
    """Attempt.worker_id: "" when no worker ran it (worker 0 is a worker)."""
    return "" if worker_id is None else str(worker_id)


def _when(epoch: float | None) -> datetime:
    return datetime.fromtimestamp(epoch or time.time(), tz=UTC)


class Recorder:
    """Persist and broadcast what the pool reports; one writer thread."""

    def __init__(self, *, host: str, output_root: Path, broadcaster: Broadcaster,
                 lease: timedelta) -> None:
        self.host = host
        self.output_root = output_root
        self.broadcaster = broadcaster
        self.lease = lease
        self.run_id: int | None = None
        self.memory_limit_mb = 0.0
        # The latest fields of every worker card, for the host's heartbeat row.
        self.cards: dict[int, dict[str, Any]] = {}
        self._cards_lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="recorder", daemon=True)
        self._writer.start()

    # -- the pool's callback (its event thread) ---------------------------------------
    def on_event(self, event: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind == EventKind.PO_FINISHED:
            self._card(event.record.worker_id, state="idle", po_number="", phase="",
                       po_started_at=None)
        elif kind == EventKind.PO_REQUEUED:
            self._po_requeued(event)
        elif kind == EventKind.PO_STARTED:
            self._po_started(event)
        elif kind == EventKind.PHASE_CHANGED:
            self._phase(event)
        elif kind == EventKind.HEARTBEAT:
            self._heartbeat(event)
        elif kind == EventKind.WORKER_STARTED:
            self._worker_started(event)
        elif kind == EventKind.WORKER_STOPPED:
            self._worker_stopped(event)
        elif kind == EventKind.STATE_CHANGED:
            self._state_changed(event)

    def finish(self, record: PORecord) -> None:
        """The task source's finish(): queue the final outcome of a PO for the writer."""
        self._queue.put(("finished", record))

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued write is done; False on timeout."""
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._writer.join(timeout)

    def note(self, kind: str, message: str, level: str = "info") -> None:
        """Add a line to the recent-events list (DB and live)."""
        item = {"at": time.time(), "host": self.host, "level": level, "kind": kind,
                "message": message}
        self.broadcaster.event(item)
        self._queue.put(("note", item))

    # -- live updates ---------------------------------------------------------------------
    def _card(self, worker_id: int | None, **fields: Any) -> None:
        if worker_id is None:
            return
        fields = {"host": self.host, "worker_id": worker_id, **fields}
        with self._cards_lock:
            self.cards.setdefault(worker_id, {}).update(fields)
        self.broadcaster.worker(f"{self.host}/{worker_id}", fields)

    def card_snapshot(self, live_ids: set[int]) -> list[dict[str, Any]]:
        """The cards of the workers that exist now, ordered by worker id.

        A worker that is gone (scaled down, stopped) is dropped, and dashboards are told
        to remove its card.
        """
        with self._cards_lock:
            gone = [worker_id for worker_id in self.cards if worker_id not in live_ids]
            for worker_id in gone:
                del self.cards[worker_id]
            cards = [dict(self.cards[w]) for w in sorted(self.cards)]
        for worker_id in gone:
            self.broadcaster.worker(f"{self.host}/{worker_id}", {"removed": True})
        return cards

    def _po_started(self, event: POStarted) -> None:
        self._card(event.worker_id, state="busy", po_number=event.po_number,
                   phase="starting", po_started_at=event.at)
        # Nothing to write: the claim stamped last_attempt_at and the lease, and the
        # host renews its leases every lease/3 while a PO waits or runs.

    def _phase(self, event: PhaseChanged) -> None:
        self._card(event.worker_id, phase=event.phase, po_number=event.po_number)

    def _heartbeat(self, event: Heartbeat) -> None:
        self._card(event.worker_id, pid=event.pid, memory_mb=round(event.memory_mb, 1),
                   memory_limit_mb=self.memory_limit_mb, done=event.tasks_done)

    def _worker_started(self, event: WorkerStarted) -> None:
        self._card(event.worker_id, pid=event.pid, state="idle", restarts=event.restarts,
                   po_number="", phase="")
        if event.restarts:
            self.note("worker_replaced", f"worker {event.worker_id} replaced "
                      f"(restart {event.restarts}, ready in {event.startup_seconds:.1f} s)",
                      "warning")

    def _worker_stopped(self, event: WorkerStopped) -> None:
        self._card(event.worker_id, state="dead" if event.crashed else "stopped",
                   po_number="", phase="")
        if event.crashed:
            self.note("worker_crashed", f"worker {event.worker_id} (pid {event.pid}) ended: "
                      f"{event.reason}", "error")

    def _po_requeued(self, event: PORequeued) -> None:
        # The worker is free again (its next PO, if any, starts a new card state).
        self._card(event.worker_id, state="idle", po_number="", phase="", po_started_at=None)
        self.note("po_retried", f"{event.po_number} retried after attempt {event.attempt}: "
                  f"{event.reason}" + (f" (in {event.delay:.0f} s)" if event.delay else ""),
                  "warning")
        self._queue.put(("requeued", event))

    def _state_changed(self, event: StateChanged) -> None:
        self.broadcaster.pool({"host": self.host, "state": str(event.new),
                               "reason": event.reason})
        if event.new == "PAUSED" and event.pause is not None and event.pause.automatic:
            self.note("auto_paused", f"pool paused: {event.reason}", "error")

    # -- the writer thread ------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, payload = item
            self._write_patiently(kind, payload)
            reset_queries()  # DEBUG query log: see HostSupervisor.serve

    def _write_patiently(self, kind: str, payload: Any) -> None:
        """Write one item; wait out a locked or unreachable database instead of losing it.

        A result given up on is not lost either (the lease expires and the PO is done
        again), but that costs a second visit to the site, so try for a few minutes.
        """
        delay = 0.5
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                self._write(kind, payload)
                return
            except (OperationalError, InterfaceError) as exc:
                log.warning("database unavailable while recording %s (try %d): %s",
                            kind, attempt, exc)
                close_old_connections()
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception:
                log.exception("could not record %s", kind)
                close_old_connections()
                return
        log.error("gave up recording %s after %d tries; its lease will expire and the PO "
                  "will be done again", kind, WRITE_ATTEMPTS)

    def _write(self, kind: str, payload: Any) -> None:
        if kind == "flush":
            payload.set()
        elif kind == "finished":
            self._record_final(payload)
        elif kind == "requeued":
            self._record_requeued(payload)
        elif kind == "note":
            PoolEvent.objects.create(at=_when(payload["at"]), host=self.host,
                                     level=payload["level"], kind=payload["kind"],
                                     message=payload["message"][:500])

    def _record_requeued(self, event: PORequeued) -> None:
        status = Status.TIMEOUT if event.reason in TIMEOUT_REASONS else Status.FAILED
        with transaction.atomic():
            retried = f"retried{f' after {event.delay:.0f} s' if event.delay else ''}"
            Attempt.objects.create(
                po_id=int(event.key), run_id=self.run_id, host=self.host,
                worker_id=_worker_text(event.worker_id),
                attempt_number=self._attempt_number(int(event.key)),
                started_at=_when(event.at - event.seconds), finished_at=_when(event.at),
                duration=event.seconds or None, status=status, retryable=True,
                reason=event.reason[:100],
                message=f"{event.message}; {retried}" if event.message else retried)
            # The next try spends a retry only if the engine charged it (a 429 does not).
            PurchaseOrder.objects.requeue(int(event.key), self.host, self.lease,
                                          charged=event.charged)

    def _attempt_number(self, po_id: int) -> int:
        return Attempt.objects.filter(po_id=po_id).count() + 1

    def _record_final(self, record: PORecord) -> None:
        po_id = int(record.key)
        if record.status == POStatus.CANCELLED:
            self._hand_back(po_id, record)
            return
        status = Status(record.status.value if record.status else Status.FAILED)
        duration = record.attempt_seconds[-1] if record.attempt_seconds else None
        finished = _when(record.finished_at)
        started = finished - timedelta(seconds=duration or 0)
        screenshot, html = self._evidence(record.evidence)
        with transaction.atomic():
            cancel = ControlAction.objects.filter(
                action=ControlAction.Action.CANCEL_PO, po_id=po_id,
                outcome=ControlAction.Outcome.PENDING).first()
            owned = PurchaseOrder.objects.finish(
                po_id, self.host, status, reason=record.reason or "",
                message=record.message, output_folder=record.folder,
                supplier_seen=record.supplier_seen or "", at=finished,
                cancelled_by=(cancel.username or "an operator") if cancel else "")
            attempt = Attempt.objects.create(
                po_id=po_id, run_id=self.run_id, host=self.host,
                worker_id=_worker_text(record.worker_id),
                attempt_number=self._attempt_number(po_id), started_at=started,
                finished_at=finished, duration=duration, status=status, retryable=False,
                reason=(record.reason or "")[:100], message=record.message,
                steps=[list(step) for step in record.steps], screenshot=screenshot,
                html_evidence=html, remote_traceback=record.remote_traceback,
                sources=[dataclasses.asdict(source) for source in record.sources],
                blocked_requests=list(record.blocked_requests))
            if not owned:
                log.warning("PO %s finished here but its lease had moved on; outcome not "
                            "recorded (another host owns it)", record.po_number)
                return
            Document.objects.filter(po_id=po_id).delete()
            Document.objects.bulk_create([
                Document(po_id=po_id, attempt=attempt, name=f.name[:255], size=f.size,
                         sha256=f.sha256, content_type=f.content_type[:200], path=f.path,
                         source=f.source, source_url=f.source_url[:2000],
                         place=f.place[:50], warning=f.warning[:500])
                for f in record.files
            ])
            if cancel:
                cancel.settle(ControlAction.Outcome.DONE,
                              f"{record.po_number} cancelled after its attempt", host=self.host)

    def _hand_back(self, po_id: int, record: PORecord) -> None:
        """A PO the pool did not finish (stopped): back to the queue, never lost."""
        PurchaseOrder.objects.release(self.host, [po_id], attempted=record.attempts > 0)

    def _evidence(self, paths: tuple[str, ...]) -> tuple[str, str]:
        screenshot = html = ""
        for path in paths:
            relative = self._relative(path)
            if relative.endswith(".png"):
                screenshot = relative
            elif relative.endswith((".html", ".htm")):
                html = relative
        return screenshot, html

    def _relative(self, path: str) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.output_root))
        except ValueError:
            return ""  # evidence outside the output root is never served
