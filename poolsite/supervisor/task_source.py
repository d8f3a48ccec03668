"""The durable task source: POs come from the database, leased to this host.

The pool calls `claim()` from its manager thread whenever a worker is free; that call
must be quick (the engine's distribution latency target, docs/worker_pool.md), so it
never touches the database.
A feeder thread keeps a small buffer of already-leased POs (`prefetch`, about one per
worker) and refills it whenever a claim takes one. Buffered POs hold a lease like
running ones, so a crash of this host returns them to the queue like any other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django.db import close_old_connections, reset_queries

from pool_core.events import PORecord
from pool_core.messages import Task
from pool_core.task_source import InMemoryTaskSource
from poolsite.batches.models import Batch, PurchaseOrder, Status

log = logging.getLogger(__name__)


def task_for(po: PurchaseOrder, batch: Batch) -> Task:
    """Turn a leased PO row into the Task a worker receives."""
    extra = tuple((str(k), str(v)) for k, v in (po.extra or {}).items())
    # A PO without an amount (the file had no amount column) goes out as 0: the engine
    # only carries it along, and its Task type wants a number.
    amount = po.amount if po.amount is not None else Decimal(0)
    return Task(key=str(po.pk), po_number=po.po_number, supplier=po.supplier, url=po.url,
                amount=amount, batch=batch.output_dir_name(), attempt=po.attempts,
                extra=extra)


class DbTaskSource:
    """A TaskSource (pool_core.task_source) over the PurchaseOrder table.

    Its local buffer is pool_core's own InMemoryTaskSource (FIFO plus delayed retries);
    this class adds the feeder that fills it with leased POs.
    """

    def __init__(self, *, host: str, lease: timedelta, prefetch: int,
                 on_finish: Callable[[PORecord], None]) -> None:
        self.host = host
        self.lease = lease
        self.prefetch = max(1, prefetch)
        self._on_finish = on_finish
        self._buffer = InMemoryTaskSource()
        self._lock = threading.Lock()
        self._batch: Batch | None = None
        self._queued_in_db = 0
        self._exhausted = False
        self._paused = False
        self._want = threading.Event()
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="po-feeder", daemon=True)
        self._feeder.start()

    # -- the host's side ----------------------------------------------------------------
    def set_batch(self, batch: Batch | None) -> None:
        """Work on `batch` from now on (None: claim nothing more)."""
        with self._lock:
            self._batch = batch
            self._exhausted = False
        self._want.set()

    def set_paused(self, paused: bool) -> None:
        """Stop (or restart) claiming; a paused pool should not sit on leased POs."""
        with self._lock:
            self._paused = paused
        self._want.set()

    def set_prefetch(self, prefetch: int) -> None:
        self.prefetch = max(1, prefetch)
        self._want.set()

    def refresh_queued_count(self, known: tuple[int, int] | None = None) -> int:
        """Re-read how many POs of the batch wait in the database (for pending()).

        `known` is a (batch id, queued count) the caller has just read anyway; it is
        used when it is about this source's batch, saving a query.
        """
        batch = self._batch
        if batch is None:
            count = 0
        elif known is not None and known[0] == batch.pk:
            count = known[1]
        else:
            count = PurchaseOrder.objects.filter(batch_id=batch.pk,
                                                 status=Status.QUEUED).count()
        with self._lock:
            self._queued_in_db = count
            if count:
                self._exhausted = False
        if count:
            self._want.set()
        return count

    def held(self) -> int:
        """POs leased to this host but not handed to a worker yet."""
        return self._buffer.pending()

    def close(self) -> None:
        self._stop.set()
        self._want.set()
        self._feeder.join(timeout=10)

    # -- the TaskSource protocol (the pool's side) --------------------------------------
    def set_wakeup(self, wakeup: Callable[[], None]) -> None:
        self._buffer.set_wakeup(wakeup)

    def claim(self) -> Task | None:
        task = self._buffer.claim()
        self._want.set()  # top the buffer up again
        return task

    def next_ready_at(self) -> float | None:
        return self._buffer.next_ready_at()

    def retry(self, task: Task, delay: float) -> None:
        # The PO keeps its lease while it waits here; the recorder counts the attempt.
        self._buffer.retry(task, delay)

    def finish(self, record: PORecord) -> None:
        self._on_finish(record)

    def drain(self) -> list[Task]:
        return self._buffer.drain()

    def pending(self) -> int:
        with self._lock:
            return self._buffer.pending() + self._queued_in_db

    # -- the feeder thread --------------------------------------------------------------
    def _feed(self) -> None:
        while not self._stop.is_set():
            self._want.wait(timeout=1.0)
            self._want.clear()
            try:
                self._top_up()
                reset_queries()  # DEBUG query log: see HostSupervisor.serve
            except Exception:
                log.exception("could not claim POs; trying again in a moment")
                close_old_connections()
                self._stop.wait(1.0)

    def _top_up(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                batch = self._batch
                if batch is None or self._exhausted or self._paused or (
                        self._buffer.pending() >= self.prefetch):
                    return
            po = PurchaseOrder.objects.claim(batch.pk, self.host, self.lease)
            with self._lock:
                if po is None:
                    self._exhausted = True
                    self._queued_in_db = 0
                    return
                if self._batch is None or self._batch.pk != batch.pk:
                    # The batch changed meanwhile.
                    PurchaseOrder.objects.release(self.host, [po.pk])
                    return
                self._queued_in_db = max(0, self._queued_in_db - 1)
                # Under the lock, so a concurrent set_batch(None) + drain() cannot miss it.
                self._buffer.add([task_for(po, batch)])
