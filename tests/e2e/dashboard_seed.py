"""What a short failed run leaves in the database, for tests/e2e/test_dashboard_truth.py.

Run inside `manage.py shell` of the server under test (its POOL_DATA_DIR):

* a 60-PO batch worked on for the last 3 minutes: 20 POs finished through the real PO
  lifecycle (claim, finish), a few a minute;
* 4 failures whose messages are long URLs with no space to break at, each with a
  screenshot (the PNG at `screenshot`, as the worker took it) and the page's HTML;
* a live host that has claimed 8 POs (the lifecycle's claim, as its task source does
  ahead of its workers) while only its 4 workers are on one each;
* a saved site session that worked 40 minutes ago and that the site has since revoked
  (the last probe, 2 minutes ago, was refused).
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from poolsite.batches.models import Attempt, Batch, PurchaseOrder, Status
from poolsite.sessions.models import SiteSession
from poolsite.supervisor.models import PoolHost, PoolPlan

HOST = "preview-host:4242"  # the host dashboard_preview keeps alive
POS = 60
FINISHED = 20
FAILED = 4
CLAIMED = 8
WORKERS = 4
LEASE = timedelta(days=1)


def long_message(i: int) -> str:
    query = "&".join(f"param{n}=value{n:04d}{'x' * 12}" for n in range(12))
    return (f"DOWNLOAD_FAILED: http://127.0.0.1:1/attachments/download/{i}/"
            f"{'segment-' * 20}invoice-{i}.pdf?{query}")


def seed(screenshot: str) -> None:
    now = timezone.now()
    batch = Batch.objects.create(name="Three-minute run", source_name="run.csv",
                                 source_sha256="1" * 64, source_size=1000,
                                 site_preset="demo", po_count=POS)
    PurchaseOrder.objects.bulk_create(
        PurchaseOrder(batch=batch, row_number=i + 2, po_number=f"PO{500000 + i}",
                      supplier="Acme GmbH", amount=Decimal("12.50"),
                      url=f"http://127.0.0.1:1/order_headers/{500000 + i}")
        for i in range(POS))
    evidence = Path(batch.output_dir_name()) / "evidence"
    (Path(settings.OUTPUT_DIR) / evidence).mkdir(parents=True, exist_ok=True)
    for i in range(FINISHED):
        po = PurchaseOrder.objects.claim(batch.pk, HOST, LEASE)
        assert po is not None
        # Spread over the last three minutes: about 7 a minute.
        at = now - timedelta(seconds=170 - i * 170 / (FINISHED - 1))
        failed = i % 5 == 1 and i // 5 < FAILED
        status = Status.FAILED if failed else Status.COMPLETED
        message = long_message(i) if failed else ""
        PurchaseOrder.objects.finish(po.pk, HOST, status, reason="DOWNLOAD_FAILED" if failed
                                     else "", message=message, at=at)
        if failed:
            shot = evidence / f"{po.po_number}-attempt1.png"
            html = evidence / f"{po.po_number}-attempt1.html"
            shutil.copy(screenshot, Path(settings.OUTPUT_DIR) / shot)
            (Path(settings.OUTPUT_DIR) / html).write_text("<html><body>Oops</body></html>")
            Attempt.objects.create(po=po, host=HOST, worker_id="w1", attempt_number=1,
                                   started_at=at - timedelta(seconds=5), finished_at=at,
                                   duration=5.0, status=status, reason="DOWNLOAD_FAILED",
                                   message=message, screenshot=str(shot),
                                   html_evidence=str(html))
    claimed = [PurchaseOrder.objects.claim(batch.pk, HOST, LEASE) for _ in range(CLAIMED)]
    cards = [{"host": HOST, "worker_id": f"w{n + 1}", "pid": 60_000 + n, "state": "busy",
              "po_number": po.po_number, "phase": "downloads",
              "po_started_at": now.timestamp() - 5, "done": 5, "restarts": 0,
              "memory_mb": 200, "memory_limit_mb": 800}
             for n, po in enumerate(claimed[:WORKERS]) if po is not None]
    PoolHost.objects.update_or_create(name=HOST, defaults={
        "hostname": "preview-host", "pid": os.getpid(), "state": "RUNNING", "reason": "",
        "batch": batch, "pool_size": WORKERS, "heartbeat_at": now, "stopped_at": None,
        "metrics": {}, "workers": cards})
    PoolPlan.transition(batch=batch, state=PoolPlan.State.RUNNING, pool_size=WORKERS,
                        reason="")
    SiteSession.objects.update_or_create(site="demo", defaults={
        "path": "demo.json", "captured_at": now - timedelta(hours=2),
        "captured_by_name": "otto", "cookie_count": 2,
        "earliest_expiry": now + timedelta(days=30),
        "last_ok_at": now - timedelta(minutes=40),
        "last_probe_at": now - timedelta(minutes=2), "last_probe_ok": False,
        "last_probe_message": "the site asked for a login: the session was signed out"})
