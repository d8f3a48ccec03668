"""Realistic dashboard data without a running pool: for previews, screenshots and benches.

`seed_preview` writes what a busy run leaves in the database (a batch part-way done,
failures with screenshots, a live PoolHost with worker cards, recent events, a running
plan). `FakeEngine` then plays a pool's live updates through a Broadcaster, the same
way the runpool supervisor does, so the page and its latency can be watched and
measured with no browser workers at all.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time
import zlib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from pool_core.reasons import Reason
from poolsite.batches.models import Attempt, Batch, PurchaseOrder, Status
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.models import PoolEvent, PoolHost, PoolPlan

PHASES = ("open PO page", "read attachments", "download", "verify files", "save page PDF")
FAILURE_KINDS = (
    (Status.LOGIN_REQUIRED, "LOGIN_REQUIRED", "The site asked for a login on /order_headers"),
    (Status.TIMEOUT, Reason.NAV_TIMEOUT, "Page did not load within 30 s"),
    (Status.PO_NOT_FOUND, "PO_NOT_FOUND", "Search returned no PO with this number"),
    (Status.FAILED, "DOWNLOAD_FAILED", "Attachment download failed: HTTP 502"),
)
MEMORY_LIMIT_MB = 400
PREVIEW_LEASE = timedelta(days=1)  # the pretend host never renews its leases


def seed_preview(*, pos: int = 240, workers: int = 4, host: str = "preview-host:4242",
                 done_share: float = 0.45) -> Batch:
    """Create a part-done batch, a live host with `workers` busy cards, events, failures."""
    now = timezone.now()
    batch = Batch.objects.create(
        name="Q3 supplier invoices", source_name="q3-pos.xlsx", source_sha256="0" * 64,
        source_size=48_213, site_preset="demo", po_count=pos)
    PurchaseOrder.objects.bulk_create(
        PurchaseOrder(batch=batch, row_number=i + 2, po_number=f"PO{300000 + i}",
                      supplier=random.choice(("Acme GmbH", "Globex", "Initech", "Umbrella")),
                      url=f"http://127.0.0.1:1/order_headers/{300000 + i}",
                      amount=Decimal(random.randint(100, 90_000)) / 100)
        for i in range(pos))
    ids = list(batch.pos.order_by("id").values_list("id", flat=True))
    done = ids[: int(pos * done_share)]
    failed = done[3::14][: len(FAILURE_KINDS) * 2]
    outcomes = _outcomes(done, now)
    for index, po_id in enumerate(failed):
        outcomes[po_id] = _record_failure(batch, po_id, index)
    # Through the PO lifecycle, as a host would: claims take the queue in order, so the
    # first `done` POs finish, then one PO is running per worker.
    for _ in done:
        po = PurchaseOrder.objects.claim(batch.pk, host, PREVIEW_LEASE)
        assert po is not None
        status, reason, message, at, retries = outcomes[po.pk]
        for _ in range(retries):
            PurchaseOrder.objects.requeue(po.pk, host, PREVIEW_LEASE, charged=True)
        PurchaseOrder.objects.finish(po.pk, host, status, reason=reason, message=message,
                                     at=at)
    running = [PurchaseOrder.objects.claim(batch.pk, host, PREVIEW_LEASE)
               for _ in range(workers)]
    running_numbers = [po.po_number for po in running if po is not None]
    PoolHost.objects.update_or_create(name=host, defaults={
        "hostname": host.split(":")[0], "pid": os.getpid(), "state": "RUNNING", "reason": "",
        "batch": batch, "pool_size": workers, "heartbeat_at": now, "stopped_at": None,
        "metrics": {"throughput_per_min": 11.5},
        "workers": [worker_card(host, i + 1, running_numbers[i] if i < len(running_numbers)
                                else None, done=len(done) // workers) for i in range(workers)],
    })
    PoolPlan.transition(batch=batch, state=PoolPlan.State.RUNNING, pool_size=workers,
                        reason="")
    _events(host, now)
    return batch


Outcome = tuple[str, str, str, Any, int]  # status, reason, message, when, retries


def _outcomes(done: list[int], now: Any, minutes: int = 20) -> dict[int, Outcome]:
    """How finished POs ended, spread over the last `minutes` (a few per minute)."""
    outcomes: dict[int, Outcome] = {}
    per_minute = max(1, -(-len(done) // minutes))
    for minute, start in enumerate(range(0, len(done), per_minute)):
        at = now - timedelta(minutes=minutes - minute, seconds=-random.uniform(0, 50))
        chunk = done[start:start + per_minute]
        cut_a, cut_b = len(chunk) * 8 // 10, len(chunk) * 9 // 10
        for part, status in ((chunk[:cut_a], Status.COMPLETED),
                             (chunk[cut_a:cut_b], Status.PARTIAL),
                             (chunk[cut_b:], Status.NO_ATTACHMENTS)):
            outcomes.update((po_id, (status, "", "", at, 0)) for po_id in part)
    return outcomes


def worker_card(host: str, number: int, po_number: str | None, *, done: int = 0) -> dict[str, Any]:
    """One worker card as the supervisor reports it."""
    return {
        "host": host, "worker_id": f"w{number}", "pid": 50_000 + number,
        "state": "busy" if po_number else "idle", "po_number": po_number or "",
        "phase": random.choice(PHASES) if po_number else "",
        "po_started_at": time.time() - random.uniform(1, 25) if po_number else None,
        "done": done + random.randint(0, 5), "restarts": 1 if number == 3 else 0,
        "memory_mb": random.randint(190, 330), "memory_limit_mb": MEMORY_LIMIT_MB,
    }


def _record_failure(batch: Batch, po_id: int, index: int) -> Outcome:
    """A failure after three attempts, with its last attempt's screenshot."""
    status, reason, message = FAILURE_KINDS[index % len(FAILURE_KINDS)]
    at = timezone.now() - timedelta(minutes=index * 2 + 1)
    po = PurchaseOrder.objects.get(pk=po_id)
    relative = Path(batch.output_dir_name()) / "evidence" / f"{po.po_number}-3.png"
    target = Path(settings.OUTPUT_DIR) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(fake_page_png(seed=index))
    Attempt.objects.create(po=po, host="preview-host:4242", worker_id="w2", attempt_number=3,
                           started_at=at - timedelta(seconds=30), finished_at=at, duration=30.0,
                           status=status, reason=reason, message=message,
                           screenshot=str(relative))
    return status, reason, message, at, 2


def _events(host: str, now: Any) -> None:
    lines = (
        (40, "info", "run_started", "Run of 'Q3 supplier invoices' started with 4 workers"),
        (31, "warning", "worker_replaced", "w3 crashed (exit -9, memory 812 MB); replaced"),
        (30, "info", "po_retried", "PO300017 retried after a worker crash (attempt 2 of 3)"),
        (18, "warning", "po_retried", "PO300059 timed out; retrying (attempt 2 of 3)"),
        (9, "error", "po_failed", "PO300087 failed: LOGIN_REQUIRED"),
        (4, "info", "scaled", "Pool scaled 2 → 4 by operator"),
    )
    PoolEvent.objects.bulk_create(
        PoolEvent(at=now - timedelta(minutes=minutes), host=host, level=level, kind=kind,
                  message=message) for minutes, level, kind, message in lines)


def fake_page_png(*, width: int = 240, height: int = 160, seed: int = 0) -> bytes:
    """A small PNG that looks like a page with a red error banner (no imaging library)."""
    rows = []
    for y in range(height):
        row = bytearray([0])  # filter: none
        for x in range(width):
            if y < 18:
                pixel = (29, 35, 48)
            elif 28 <= y < 48 and 10 <= x < width - 10:
                pixel = (253, 236, 234) if not 12 <= x < 16 else (210, 70, 60)
            elif y > 60 and (y // 12) % 2 == 0 and 10 <= x < 10 + (width - 40) * (
                    0.5 + 0.5 * ((y * 7 + seed) % 5) / 5):
                pixel = (200, 205, 214)
            else:
                pixel = (255, 255, 255)
            row.extend(pixel)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b""))


class FakeEngine:
    """Play a busy pool's live updates through a Broadcaster (for previews and benches)."""

    def __init__(self, broadcaster: Broadcaster, *, host: str, workers: int, batch: Batch,
                 updates_per_second: float = 20.0) -> None:
        self.broadcaster = broadcaster
        self.host = host
        self.workers = workers
        self.batch_id = batch.pk
        self.counts = batch.status_counts()
        self.period = 1.0 / updates_per_second
        self.next_po = 400_000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-engine", daemon=True)

    def start(self) -> FakeEngine:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        rng = random.Random(7)
        while not self._stop.wait(self.period):
            number = rng.randint(1, self.workers)
            fields: dict[str, Any] = {"state": "busy", "phase": rng.choice(PHASES),
                                      "memory_mb": rng.randint(190, 360)}
            if fields["phase"] == PHASES[0]:
                self.next_po += 1
                fields.update(po_number=f"PO{self.next_po}", po_started_at=time.time())
                self._finish_one(rng)
            self.broadcaster.worker(f"{self.host}/w{number}", fields)
            self.broadcaster.pool({
                "host": self.host, "state": "RUNNING", "batch_id": self.batch_id,
                "counts": dict(self.counts), "total": sum(self.counts.values()),
            })
            self._stamp()

    def _stamp(self) -> None:
        """Stamp the pending update with its OLDEST event, so latency is not flattered.

        Broadcaster.pool() merges fields (the latest sent_at would win); the honest
        figure is from the first event that waits in the coalescing window.
        """
        broadcaster = self.broadcaster
        with broadcaster._lock:
            broadcaster._pool.setdefault("sent_at", int(time.time() * 1000))

    def _finish_one(self, rng: random.Random) -> None:
        if self.counts.get(Status.QUEUED, 0) <= 0:
            return
        self.counts[Status.QUEUED] -= 1
        outcome = Status.TIMEOUT if rng.random() < 0.05 else Status.COMPLETED
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
