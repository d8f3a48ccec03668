"""/healthz, /metrics and the coalescing broadcaster."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import Client
from django.utils import timezone

from poolsite.batches.models import Attempt, Batch, PurchaseOrder, Status
from poolsite.supervisor.broadcast import GROUP, Broadcaster
from poolsite.supervisor.models import PoolHost


def _data() -> None:
    batch = Batch.objects.create(name="b", source_name="b.csv", source_sha256="0" * 64,
                                 site_preset="demo", po_count=3)
    for i, status in enumerate((Status.QUEUED, Status.COMPLETED, Status.FAILED)):
        po = PurchaseOrder.objects.create(batch=batch, po_number=f"PO{i}", supplier="s",
                                          url="http://127.0.0.1/x", amount=Decimal(1),
                                          status=status)
        if status != Status.QUEUED:
            Attempt.objects.create(po=po, status=status, duration=3.5 + i)
    PoolHost.objects.create(name="h:1", hostname="h", pid=1, state="RUNNING", workers=[
        {"worker_id": 0, "state": "busy", "memory_mb": 150.5},
        {"worker_id": 1, "state": "idle", "memory_mb": 140.0}])
    PoolHost.objects.create(name="gone:2", hostname="gone", pid=2, state="RUNNING",
                            heartbeat_at=timezone.now() - timedelta(minutes=5),
                            workers=[{"worker_id": 0, "state": "busy"}])


@pytest.mark.django_db
def test_it_reports_health_with_live_supervisors_only() -> None:
    _data()
    body = Client().get("/healthz").json()
    assert body["ok"] and body["database"] == "ok"
    assert [s["name"] for s in body["supervisors"]] == ["h:1"]
    assert body["workers_alive"] == 2 and body["queued"] == 1


@pytest.mark.django_db
def test_it_exposes_prometheus_metrics() -> None:
    _data()
    response = Client().get("/metrics")
    text = response.content.decode()
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'poolsite_pos{status="COMPLETED"} 1' in text
    assert "poolsite_queue_depth 1" in text
    assert 'poolsite_attempt_duration_seconds_bucket{le="5"} 1' in text
    assert 'poolsite_attempt_duration_seconds_bucket{le="+Inf"} 2' in text
    assert "poolsite_attempt_duration_seconds_sum 10.000" in text
    assert 'poolsite_workers{state="busy"} 1' in text
    assert 'poolsite_worker_memory_bytes{host="h:1",worker="0"} 157810688' in text
    assert "poolsite_supervisors 1" in text


def test_it_coalesces_updates_to_at_most_ten_messages_a_second() -> None:
    layer = get_channel_layer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro: Any, timeout: float = 5) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    channel = on_loop(layer.new_channel())
    on_loop(layer.group_add(GROUP, channel))
    broadcaster = Broadcaster(loop=loop, interval=0.1)
    started = time.monotonic()
    for i in range(2000):  # a very busy second: 2,000 card changes
        broadcaster.worker("h/0", {"phase": f"step {i}", "done": i})
        if i % 200 == 0:
            time.sleep(0.1)
    broadcaster.close()
    elapsed = time.monotonic() - started
    messages = []
    while True:
        try:
            messages.append(on_loop(asyncio.wait_for(layer.receive(channel), 0.3)))
        except TimeoutError:
            break
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    assert messages, "no update arrived"
    assert len(messages) <= 10 * elapsed + 2
    assert messages[-1]["workers"]["h/0"] == {"phase": "step 1999", "done": 1999}
