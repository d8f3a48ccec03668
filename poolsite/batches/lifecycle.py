"""A PO's lifecycle: the only code that moves a PO between statuses, leases it, or counts
its attempts (`status`, `attempts`, `leased_by`, `lease_expires_at`).

    QUEUED ──claim──▶ RUNNING ──finish──▶ COMPLETED, PARTIAL, …, FAILED, CANCELLED
      ▲ ▲ ▲            │ ▲  │
      │ │ │            │ └──┴─ renew (the lease), requeue (the engine tries it again here)
      │ │ └─ release ──┤      (a host hands it back: stopped, paused, batch changed)
      │ └── recover ───┘      (its lease expired: its host died; FAILED "CRASHED" when
      │                        it has no attempts left)
      └──── retry ◀── any final status but a success (a fresh retry budget)
    QUEUED ──cancel──▶ CANCELLED (a RUNNING PO is cancelled by `finish` when its attempt ends)

`attempts` counts the tries charged to a PO's retry budget, the one under way included:
a claim charges the try it starts (so a host that dies mid-PO has spent one), the
engine's re-queues are charged or not as the engine charges them (a 429's retry-after,
a login wall and a browser lost before the PO started are free), a release of a PO
never tried gives the claim's charge back, and retry starts over at zero. A PO that
moves to another host takes its count along (the engine resumes its budget from it).

Every transition is one conditional UPDATE (on the status and, for a host's POs, on
`leased_by`) or a locked read-modify-write, inside `transaction.atomic`, so two hosts
never both move one PO. Claims never hand one PO to two hosts:
* PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED` inside the transaction;
* SQLite: `select_for_update()` is a no-op there, so the claim is one
  `UPDATE … WHERE id = (SELECT the head of the queue) … RETURNING id` statement, which
  SQLite runs under its single writer lock (RETURNING needs SQLite 3.35; a system check
  says so on older ones).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from poolsite.batches.statuses import RETRYABLE_STATUSES, Status

if TYPE_CHECKING:
    from poolsite.batches.models import PurchaseOrder

log = logging.getLogger(__name__)
CANCEL_REASON = "CANCELLED"  # the reason of every cancelled PO, queued or running
CRASH_REASON = "CRASHED"  # its host stopped responding on its last allowed attempt


class POQuerySet(models.QuerySet["PurchaseOrder"]):
    """PurchaseOrder.objects: queries, and every transition of a PO's lifecycle."""

    # -- queries ------------------------------------------------------------------------
    def retryable(self) -> POQuerySet:
        return self.filter(status__in=RETRYABLE_STATUSES)

    def held_by(self, host: str) -> POQuerySet:
        """The POs leased to `host` (running, or claimed ahead and waiting there)."""
        return self.filter(status=Status.RUNNING, leased_by=host)

    # -- a host's POs -------------------------------------------------------------------
    def claim(self, batch_id: int, host: str, lease: timedelta) -> PurchaseOrder | None:
        """Lease the next queued PO of a batch to `host`, charging the try it starts.

        None when none is queued. Safe with any number of hosts claiming at once.
        """
        with transaction.atomic():
            if connection.vendor == "postgresql":
                return self._claim_skip_locked(batch_id, host, lease)
            return self._claim_returning(batch_id, host, lease)

    def _claim_skip_locked(self, batch_id: int, host: str,
                           lease: timedelta) -> PurchaseOrder | None:
        po = (self.select_for_update(skip_locked=True)
              .filter(batch_id=batch_id, status=Status.QUEUED).order_by("id").first())
        if po is None:
            return None
        now = timezone.now()
        po.status, po.leased_by, po.lease_expires_at = Status.RUNNING, host, now + lease
        po.attempts += 1
        po.first_attempt_at = po.first_attempt_at or now
        po.last_attempt_at = now
        po.save(update_fields=["status", "leased_by", "lease_expires_at", "attempts",
                               "first_attempt_at", "last_attempt_at"])
        return po

    def _claim_returning(self, batch_id: int, host: str,
                         lease: timedelta) -> PurchaseOrder | None:
        # One statement: SQLite runs it under its single writer lock, so the head of the
        # queue cannot be taken by another host between reading and leasing it.
        table = self.model._meta.db_table
        at = timezone.now()
        now, until = (connection.ops.adapt_datetimefield_value(t) for t in (at, at + lease))
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET status = %s, leased_by = %s, lease_expires_at = %s, "
                f"attempts = attempts + 1, last_attempt_at = %s, "
                f"first_attempt_at = COALESCE(first_attempt_at, %s) "
                f"WHERE id = (SELECT id FROM {table} WHERE batch_id = %s AND status = %s "
                f"ORDER BY id LIMIT 1) AND status = %s RETURNING id",
                [Status.RUNNING, host, until, now, now, batch_id, Status.QUEUED,
                 Status.QUEUED])
            row = cursor.fetchone()
        return None if row is None else self.get(id=row[0])

    def renew(self, host: str, lease: timedelta) -> int:
        """Extend the leases of every PO `host` holds; return how many it holds."""
        with transaction.atomic():
            return self.held_by(host).update(lease_expires_at=timezone.now() + lease)

    def requeue(self, po_id: int, host: str, lease: timedelta, *, charged: bool) -> bool:
        """The engine tries a PO of `host` again (it stays leased there, lease renewed).

        `charged`: the next try spends one of its retries (the engine's word: a 429's
        retry-after, a login wall or a browser lost before the PO started do not). False
        when `host` no longer holds the PO.
        """
        fields: dict[str, object] = {"lease_expires_at": timezone.now() + lease}
        if charged:
            fields["attempts"] = F("attempts") + 1
        with transaction.atomic():
            return bool(self.held_by(host).filter(pk=po_id).update(**fields))

    def release(self, host: str, po_ids: Iterable[int] | None = None, *,
                attempted: bool = False) -> int:
        """Hand POs `host` holds back to the queue (all of them, or `po_ids`).

        A PO never tried (claimed ahead, or stopped before it started) gets the claim's
        charge back; an `attempted` one keeps it.
        """
        pos = self.held_by(host)
        if po_ids is not None:
            pos = pos.filter(id__in=list(po_ids))
        attempts = F("attempts") if attempted else F("attempts") - 1
        with transaction.atomic():
            return pos.update(status=Status.QUEUED, leased_by="", lease_expires_at=None,
                              attempts=attempts)

    def finish(self, po_id: int, host: str, status: str, *, reason: str = "",
               message: str = "", output_folder: str = "", supplier_seen: str = "",
               at: datetime | None = None, cancelled_by: str = "") -> bool:
        """Record the final outcome of a PO `host` holds; False if it no longer holds it.

        `cancelled_by` (an operator's name): cancel was pressed while it ran, so it ends
        CANCELLED whatever its attempt found (the attempt's own row keeps that).
        """
        if cancelled_by:
            status, reason, message = (Status.CANCELLED, CANCEL_REASON,
                                       f"Cancelled by {cancelled_by}")
        with transaction.atomic():
            return bool(self.held_by(host).filter(pk=po_id).update(
                status=status, reason=reason[:100], message=message,
                output_folder=output_folder, supplier_seen=supplier_seen[:255],
                leased_by="", lease_expires_at=None, last_attempt_at=at or timezone.now()))

    # -- any host's POs -----------------------------------------------------------------
    def recover_expired(self, max_attempts: int, *, host: str | None = None
                        ) -> tuple[int, int]:
        """Re-queue POs whose lease expired; fail those out of attempts. Return both counts.

        The claim already charged the attempt the dead host was making. `host`: a host
        known to be dead now, whose leases end at once instead of at their expiry.
        """
        now = timezone.now()
        with transaction.atomic():
            if host is not None:
                self.held_by(host).update(lease_expires_at=now - timedelta(seconds=1))
            expired = self.filter(status=Status.RUNNING, lease_expires_at__lt=now)
            failed = expired.filter(attempts__gte=max_attempts).update(
                status=Status.FAILED, reason=CRASH_REASON, leased_by="",
                lease_expires_at=None,
                message=f"its host stopped responding on each of {max_attempts} attempts")
            requeued = expired.filter(attempts__lt=max_attempts).update(
                status=Status.QUEUED, leased_by="", lease_expires_at=None)
        if failed or requeued:
            log.warning("recovered expired leases: %d re-queued, %d failed", requeued, failed)
        return requeued, failed

    # -- operators ----------------------------------------------------------------------
    def retry(self) -> int:
        """Put the POs of this queryset that did not succeed back in the queue, with a
        fresh retry budget; return how many. Their attempts' history stays."""
        with transaction.atomic():
            return self.retryable().update(
                status=Status.QUEUED, reason="", message="", attempts=0,
                leased_by="", lease_expires_at=None)

    def cancel(self, by: str) -> int:
        """Cancel the POs of this queryset nobody has claimed yet; return how many.

        A running PO is cancelled when its attempt ends (`finish(cancelled_by=…)`).
        """
        with transaction.atomic():
            return self.filter(status=Status.QUEUED).update(
                status=Status.CANCELLED, reason=CANCEL_REASON, message=f"Cancelled by {by}")
