"""The recorder turns pool events into worker cards and audit rows (real DB, real layer)."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from pool_core.events import PORequeued, POStarted
from poolsite.batches.models import Attempt, Batch, PurchaseOrder
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.recording import Recorder

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_requeued_attempt_frees_its_worker_card_and_is_audited_in_full(
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
        assert recorder.flush()
    finally:
        recorder.close()
        broadcaster.close()
    attempt = Attempt.objects.get(po=po)
    assert (attempt.worker_id, attempt.reason, attempt.retryable) == ("0", "RATE_LIMITED", True)
    assert attempt.duration == 2.5
    assert attempt.finished_at is not None
    assert abs((attempt.finished_at - attempt.started_at).total_seconds() - 2.5) < 0.01
    assert attempt.message == ("the PO page: the site asked to wait 1 s (HTTP 429); "
                               "retried after 1 s")
