"""Claiming POs from the database with a lease, renewing it, and recovering it.

The database is the truth about work. A host claims a QUEUED PO by moving it to
RUNNING with `leased_by` and `lease_expires_at`; it renews the leases of its POs while
it lives. A host that dies stops renewing, and any host puts its POs back in the
queue once the lease has expired. Claims count attempts (a crash re-queue is an
attempt), so a PO that kills its host every time ends FAILED after the retry limit.

Claims never hand one PO to two hosts:
* PostgreSQL: `SELECT … FOR UPDATE SKIP LOCKED` inside a transaction;
* SQLite: `select_for_update()` is a no-op there, so the claim is one
  `UPDATE … WHERE id = (SELECT the head of the queue) … RETURNING id` statement, which
  SQLite runs under its single writer lock (RETURNING needs SQLite 3.35; a system check
  says so on older ones).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from poolsite.batches.models import PurchaseOrder, Run, Status

log = logging.getLogger(__name__)


def claim_next(batch_id: int, host: str, lease: timedelta) -> PurchaseOrder | None:
    """Lease the next queued PO of a batch to `host`; None when none is queued."""
    if connection.vendor == "postgresql":
        return _claim_skip_locked(batch_id, host, lease)
    return _claim_returning(batch_id, host, lease)


def _claim_skip_locked(batch_id: int, host: str, lease: timedelta) -> PurchaseOrder | None:
    with transaction.atomic():
        po = (PurchaseOrder.objects.select_for_update(skip_locked=True)
              .filter(batch_id=batch_id, status=Status.QUEUED).order_by("id").first())
        if po is None:
            return None
        _lease(po, host, lease)
        po.save(update_fields=["status", "leased_by", "lease_expires_at", "attempts",
                               "first_attempt_at", "last_attempt_at"])
        return po


def _claim_returning(batch_id: int, host: str, lease: timedelta) -> PurchaseOrder | None:
    # One statement: SQLite runs it under its single writer lock, so the head of the
    # queue cannot be taken by another host between reading and leasing it.
    table = PurchaseOrder._meta.db_table
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
    return None if row is None else PurchaseOrder.objects.get(id=row[0])


def _lease(po: PurchaseOrder, host: str, lease: timedelta) -> None:
    now = timezone.now()
    po.status = Status.RUNNING
    po.leased_by = host
    po.lease_expires_at = now + lease
    po.attempts += 1
    po.first_attempt_at = po.first_attempt_at or now
    po.last_attempt_at = now


def renew(host: str, lease: timedelta) -> int:
    """Extend the leases of every PO `host` holds; return how many it holds."""
    return PurchaseOrder.objects.filter(status=Status.RUNNING, leased_by=host).update(
        lease_expires_at=timezone.now() + lease)


def release(host: str, po_ids: list[int] | None = None) -> int:
    """Hand POs `host` holds back to the queue (a graceful stop, never attempted)."""
    pos = PurchaseOrder.objects.filter(status=Status.RUNNING, leased_by=host)
    if po_ids is not None:
        pos = pos.filter(id__in=po_ids)
    return pos.update(status=Status.QUEUED, leased_by="", lease_expires_at=None,
                      attempts=F("attempts") - 1)


def recover_expired(max_attempts: int) -> tuple[int, int]:
    """Re-queue POs whose lease expired; fail those out of attempts. Return both counts.

    The claim already counted the attempt that the dead host was making.
    """
    now = timezone.now()
    expired = PurchaseOrder.objects.filter(status=Status.RUNNING, lease_expires_at__lt=now)
    with transaction.atomic():
        failed = expired.filter(attempts__gte=max_attempts).update(
            status=Status.FAILED, reason="CRASHED", leased_by="", lease_expires_at=None,
            message=f"its host stopped responding on each of {max_attempts} attempts")
        requeued = expired.filter(attempts__lt=max_attempts).update(
            status=Status.QUEUED, leased_by="", lease_expires_at=None)
    if failed or requeued:
        log.warning("recovered expired leases: %d re-queued, %d failed", requeued, failed)
    return requeued, failed


def recover_host(host: str, max_attempts: int) -> tuple[int, int]:
    """Recover every PO of a host known to be dead now, without waiting for expiry."""
    PurchaseOrder.objects.filter(status=Status.RUNNING, leased_by=host).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    return recover_expired(max_attempts)


def mark_crashed_runs(live_hosts: set[str]) -> int:
    """Mark active runs of hosts that are no longer alive as crashed."""
    active = (Run.State.STARTING, Run.State.RUNNING, Run.State.PAUSED, Run.State.STOPPING)
    return (Run.objects.filter(state__in=active).exclude(host__in=live_hosts)
            .update(state=Run.State.CRASHED, finished_at=timezone.now()))
