"""The recorder turns pool events into worker cards and audit rows (real DB, real layer)."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pool_core.events import PORecord, PORequeued, POStarted
from pool_core.messages import POStatus
from poolsite.batches.models import Attempt, Batch, PurchaseOrder
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.recording import Recorder

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
