"""The recorder turns pool events into worker cards and audit rows (real DB, real layer)."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from pool_core import ProfileManager, WorkerPool
from pool_core.events import PORecord, PORequeued, POStarted
from pool_core.messages import POStatus
from pool_core.sites import load_presets
from poolsite.batches.batch_import import batch_import_rows
from poolsite.batches.models import Attempt, Batch, PurchaseOrder, Status
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.controls import request_control
from poolsite.supervisor.recording import Recorder
from poolsite.supervisor.task_source import task_for
from tests.conftest import user_in_role

pytestmark = pytest.mark.django_db(transaction=True)


def test_attempts_free_their_worker_card_and_are_audited_in_full(
        tmp_path: Path) -> None:
    batch = Batch.objects.create(name="b", source_name="b.csv", source_sha256="0" * 64,
                                 site_preset="demo", po_count=1)
    po = PurchaseOrder.objects.create(batch=batch, po_number="PO7", supplier="s",
                                      url="http://127.0.0.1/x", amount=Decimal(1))
    broadcaster = Broadcaster()
    recorder = Recorder(host="h:1", output_root=tmp_path, broadcaster=broadcaster,
                        lease=timedelta(minutes=5))
    try:
        recorder.on_event(POStarted(worker_id=0, key=str(po.pk), po_number="PO7", attempt=1))
        assert recorder.cards[0]["state"] == "busy"
        now = time.time()
        recorder.on_event(PORequeued(
            str(po.pk), "PO7", "RATE_LIMITED", 1, 1.0, worker_id=0, seconds=2.5,
            message="the PO page: the site asked to wait 1 s (HTTP 429)", at=now))
        # Its worker is idle until it starts another PO; the card must not stay busy.
        assert (recorder.cards[0]["state"], recorder.cards[0]["po_number"]) == ("idle", "")
        # The final attempt is written through the task source's finish().
        recorder.finish(PORecord(
            key=str(po.pk), po_number="PO7", supplier="s", batch="b", state="done",
            status=POStatus.FAILED, reason="HTTP_500", attempts=2, worker_id=0,
            attempt_seconds=(2.5, 1.0), finished_at=now + 2))
        assert recorder.flush()
    finally:
        recorder.close()
        broadcaster.close()
    attempt, final = Attempt.objects.filter(po=po).order_by("attempt_number")
    assert (final.attempt_number, final.worker_id, final.duration) == (2, "0", 1.0)
    assert (attempt.worker_id, attempt.reason, attempt.retryable) == ("0", "RATE_LIMITED", True)
    assert attempt.duration == 2.5
    assert attempt.finished_at is not None
    assert abs((attempt.finished_at - attempt.started_at).total_seconds() - 2.5) < 0.01
    assert attempt.message == ("the PO page: the site asked to wait 1 s (HTTP 429); "
                               "retried after 1 s")


def _engine_requeues(site: DemoSite, tmp_path: Path, po_number: str) -> list[PORequeued]:
    """Run one PO through a real one-worker pool; return the requeues the engine made."""
    events: list[PORequeued] = []
    pool = WorkerPool(
        1, profile_manager=ProfileManager(temp_dir=str(tmp_path / "roots"),
                                          storage_state=site.storage_state()),
        output_root=str(tmp_path / "engine"),
        site=load_presets()["demo"].with_base_url(site.base_url),
        max_task_timeout=20, nav_timeout=15, startup_timeout=20, retry_limit=2,
        on_event=lambda e: events.append(e) if isinstance(e, PORequeued) else None)
    (tmp_path / "roots").mkdir()
    try:
        pool.start_processing([catalog.po_dict(site.base_url, po_number)])
        assert pool.wait_until_done(60)
    finally:
        pool.stop_processing(10)
    return events


def test_rate_limited_requeues_spend_no_attempts_and_survive_a_lease_expiry(
        site: DemoSite, tmp_path: Path) -> None:
    """The engine does not charge a 429 re-queue to a PO's retry budget; nor may the
    database, or the PO's next host (and the sweep of an expired lease) find it spent."""
    requeues = _engine_requeues(site, tmp_path, catalog.RATE_LIMITED)
    assert len(requeues) == catalog.RATE_LIMIT_HITS  # each 429 was re-queued
    assert not any(event.charged for event in requeues)  # and not charged by the engine

    batch = batch_import_rows([catalog.po_dict(site.base_url, catalog.RATE_LIMITED)],
                              name="rate-limited")
    claimed = PurchaseOrder.objects.claim(batch.pk, "host-a", timedelta(minutes=5))
    assert claimed is not None and claimed.attempts == 1
    broadcaster = Broadcaster()
    recorder = Recorder(host="host-a", output_root=tmp_path, broadcaster=broadcaster,
                        lease=timedelta(minutes=5))
    try:
        for event in requeues:  # what host-a's pool reported, about this PO
            recorder.on_event(dataclasses.replace(event, key=str(claimed.pk)))
        assert recorder.flush()
    finally:
        recorder.close()
        broadcaster.close()
    assert Attempt.objects.filter(po=claimed, retryable=True).count() == len(requeues)

    # host-a dies with the PO in hand; another host sweeps its expired lease.
    PurchaseOrder.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))
    PurchaseOrder.objects.recover_expired(max_attempts=3)
    po = PurchaseOrder.objects.get(pk=claimed.pk)
    assert (po.status, po.message) == (Status.QUEUED, "")
    assert po.attempts == 1  # only the claim was charged

    again = PurchaseOrder.objects.claim(batch.pk, "host-b", timedelta(minutes=5))
    assert again is not None and again.pk == po.pk
    assert task_for(again, batch).attempt == 2  # host-b's engine has one retry left


def test_a_po_cancelled_while_it_runs_ends_cancelled_when_its_attempt_ends(
        tmp_path: Path) -> None:
    batch = batch_import_rows([catalog.po_dict("http://127.0.0.1:1", "PO100001")],
                              name="cancel")
    po = PurchaseOrder.objects.claim(batch.pk, "host-a", timedelta(minutes=5))
    assert po is not None
    operator = user_in_role("olga", "operators")
    pending = request_control(operator, "cancel_po", po=po)
    assert pending.outcome == "pending"  # the host working on it settles it
    broadcaster = Broadcaster()
    recorder = Recorder(host="host-a", output_root=tmp_path, broadcaster=broadcaster,
                        lease=timedelta(minutes=5))
    try:
        recorder.finish(PORecord(
            key=str(po.pk), po_number=po.po_number, supplier="s", batch="b", state="done",
            status=POStatus.NO_ATTACHMENTS, reason="", attempts=1, worker_id=0,
            attempt_seconds=(1.0,), finished_at=time.time()))
        assert recorder.flush()
    finally:
        recorder.close()
        broadcaster.close()
    po.refresh_from_db()
    assert (po.status, po.reason, po.message, po.leased_by) == (
        Status.CANCELLED, "CANCELLED", "Cancelled by olga", "")
    assert Attempt.objects.get(po=po).status == Status.NO_ATTACHMENTS  # what it found
    pending.refresh_from_db()
    assert (pending.outcome, pending.handled_by) == ("done", "host-a")
