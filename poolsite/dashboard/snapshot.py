"""The dashboard's full picture, built from the database in a few indexed queries.

    PoolPlan (what operators asked) ──┐
    live PoolHost rows (worker cards) ├─▶ build_snapshot() ─▶ JSON-safe dict ─▶ page / "snapshot"
    Batch counts, chart, failures     │
    recent PoolEvents ────────────────┘

Between snapshots the supervisors' Broadcaster sends deltas ("pool.update") that use
the same field names, so the page merges either kind of message into one state.
Nothing here depends on the size of a batch beyond grouped counts (a 10,000-PO batch
costs the same few queries as a 10-PO one).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min
from django.db.models.functions import TruncMinute
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from poolsite.batches.models import (
    PENDING_STATUSES,
    RETRYABLE_STATUSES,
    SUCCESS_STATUSES,
    Attempt,
    Batch,
    PurchaseOrder,
    Status,
)
from poolsite.sessions.health import site_sessions
from poolsite.supervisor.controls import ALLOWED_IN, MAX_SIZE, MIN_SIZE, allowed_actions
from poolsite.supervisor.models import HOST_STALE_AFTER, PoolEvent, PoolHost, PoolPlan

EVENTS_SHOWN = 30
FAILURES_SHOWN = 8
MESSAGE_CHARS = 1000  # of a failure's message in the snapshot (the page clamps it)
BATCHES_SHOWN = 30
CHART_MINUTES = 30
THROUGHPUT_WINDOW_MINUTES = 5  # when no host reports a rate, average this many minutes
# Leased to a host but on none of its workers yet (claimed ahead): shown apart from RUNNING.
CLAIMED, CLAIMED_LABEL = "CLAIMED", "queued on host"
# Failures an operator should look at; a cancelled PO is a decision, not a failure.
FAILURE_STATUSES = tuple(s for s in RETRYABLE_STATUSES if s != Status.CANCELLED)


# Every field of a worker card, so a card with fields missing still renders.
CARD_DEFAULTS: dict[str, Any] = {
    "pid": None, "state": "starting", "po_number": "", "phase": "", "po_started_at": None,
    "done": 0, "restarts": 0, "memory_mb": None, "memory_limit_mb": None,
}


def epoch(when: datetime | None) -> float | None:
    return None if when is None else round(when.timestamp(), 3)


def build_snapshot() -> dict[str, Any]:
    """Return everything the dashboard shows, as plain JSON types."""
    now = timezone.now()
    plan = PoolPlan.current()
    hosts = _live_hosts(now)
    batch = plan.batch or next((h.batch for h in hosts if h.batch is not None), None)
    chart, chart_live = _chart(batch, now, hosts)
    return {
        "generated_at": int(now.timestamp() * 1000),
        "plan": _plan(plan),
        "allowed": allowed_actions(plan),
        "allowed_by_state": {str(state): [str(a) for a, states in ALLOWED_IN.items()
                                          if state in states] for state in PoolPlan.State},
        "size_range": [MIN_SIZE, MAX_SIZE],
        # A worker card's PO page: this + "<batch id>/<PO number>" (views.worker_po).
        "worker_po_url": reverse("dashboard_worker_po", args=[0, "-"]).removesuffix("0/-"),
        "statuses": {"pending": [str(s) for s in PENDING_STATUSES],
                     "success": [str(s) for s in SUCCESS_STATUSES],
                     "failure": [str(s) for s in FAILURE_STATUSES]},
        "hosts": [_host(h) for h in hosts],
        "workers": _workers(hosts),
        "headline": headline(plan.state, plan.reason, [(h.state, h.reason) for h in hosts]),
        "batch": _progress(batch, hosts, chart),
        "batches": _batches(),
        "events": _events(),
        "failures": _failures(batch),
        "chart": chart,
        "chart_live": chart_live,
        "sessions": site_sessions(),
    }


def headline(plan_state: str, plan_reason: str,
             hosts: list[tuple[str, str]]) -> dict[str, str]:
    """Say in one line what the pool is doing and why (the page's JS mirrors this)."""
    for wanted in ("ERROR", "PAUSED"):
        reasons = [reason for state, reason in hosts if state == wanted]
        if reasons:
            return {"state": wanted.lower(), "reason": next(filter(None, reasons), plan_reason)}
    if plan_state == PoolPlan.State.PAUSED:
        return {"state": "paused", "reason": plan_reason}
    if plan_state == PoolPlan.State.RUNNING and not hosts:
        return {"state": "running", "reason": "waiting for a pool host (manage.py runpool)"}
    if any(state in ("RUNNING", "STARTING") for state, _ in hosts):
        return {"state": "running", "reason": ""}
    return {"state": str(plan_state), "reason": plan_reason}


def _live_hosts(now: datetime) -> list[PoolHost]:
    fresh = now - HOST_STALE_AFTER
    return list(PoolHost.objects.filter(stopped_at=None, heartbeat_at__gte=fresh)
                .select_related("batch").order_by("name"))


def _plan(plan: PoolPlan) -> dict[str, Any]:
    return {
        "state": str(plan.state), "reason": plan.reason, "batch_id": plan.batch_id,
        "pool_size": plan.pool_size, "immediate_stop": plan.immediate_stop,
        "version": plan.version, "updated_at": epoch(plan.updated_at),
    }


def _host(host: PoolHost) -> dict[str, Any]:
    return {
        "host": host.name, "state": host.state, "reason": host.reason,
        "batch_id": host.batch_id, "pool_size": host.pool_size,
        "throughput_per_min": _rate(host), "heartbeat_at": epoch(host.heartbeat_at),
    }


def _rate(host: PoolHost) -> float | None:
    metrics = host.metrics or {}
    # The engine's performance_metrics say throughput_per_minute; broadcasts say _per_min.
    value = metrics.get("throughput_per_minute", metrics.get("throughput_per_min"))
    return float(value) if isinstance(value, int | float) else None


def _workers(hosts: list[PoolHost]) -> dict[str, dict[str, Any]]:
    cards: dict[str, dict[str, Any]] = {}
    for host in hosts:
        for card in host.workers or []:
            if not isinstance(card, dict) or "worker_id" not in card:
                continue
            cards[f"{host.name}/{card['worker_id']}"] = {**CARD_DEFAULTS, **card,
                                                         "host": host.name,
                                                         "batch_id": host.batch_id}
    return cards


def _progress(batch: Batch | None, hosts: list[PoolHost],
              chart: list[dict[str, Any]]) -> dict[str, Any] | None:
    if batch is None:
        return None
    counts = batch.status_counts()
    total = sum(counts.values())
    pending = sum(counts[s] for s in PENDING_STATUSES)
    rates = [r for h in hosts if h.batch_id == batch.pk and (r := _rate(h)) is not None]
    if rates:
        throughput = sum(rates)
    else:
        # The last few minutes of the clock (the chart spans the run: it may end earlier).
        since = (timezone.now() - timedelta(minutes=THROUGHPUT_WINDOW_MINUTES - 1)
                 ).replace(second=0, microsecond=0).timestamp()
        recent = [p for p in chart if p["t"] >= since]
        throughput = sum(p["ok"] + p["failed"] for p in recent) / THROUGHPUT_WINDOW_MINUTES
    active = _busy(hosts, batch.pk)
    return {
        "id": batch.pk, "name": batch.name, "counts": counts, "total": total,
        # Active: POs a worker is on now. RUNNING (in counts) also holds the POs a host
        # has claimed ahead for its idle workers, so it can exceed the pool size; the
        # page shows those apart ("shown").
        "shown": shown_counts(counts, active),
        "pending": pending, "active": active,
        "completed": sum(counts[s] for s in SUCCESS_STATUSES),
        "failed": sum(counts[s] for s in FAILURE_STATUSES),
        "cancelled": counts[Status.CANCELLED],
        "done": total - pending,
        "percent": round(100 * (total - pending) / total, 1) if total else 0.0,
        "throughput_per_min": round(throughput, 2),
        "eta_seconds": round(pending * 60 / throughput) if throughput > 0 and pending else None,
        "url": _url_or_none("batch_detail", batch.pk),
    }


def shown_counts(counts: dict[str, int], active: int) -> list[dict[str, Any]]:
    """The status counts as the page lists them (dashboard.js mirrors this).

    A RUNNING PO is leased to a host: on one of its workers, or claimed ahead and
    waiting on the host for a worker to come free. RUNNING shows the first kind only
    (never more than the workers busy on the batch); the rest are CLAIMED, "queued on
    host". The list still adds up to the batch.
    """
    running = counts.get(Status.RUNNING, 0)
    on_workers = min(running, active)
    shown: list[dict[str, Any]] = []
    for status, n in counts.items():
        if status == Status.RUNNING:
            shown.append({"status": str(status), "label": str(status), "n": on_workers})
            shown.append({"status": CLAIMED, "label": CLAIMED_LABEL, "n": running - on_workers})
        else:
            shown.append({"status": str(status), "label": str(status), "n": n})
    return shown


def _busy(hosts: list[PoolHost], batch_id: int) -> int:
    return sum(1 for host in hosts if host.batch_id == batch_id for card in host.workers or []
               if isinstance(card, dict) and card.get("state") == "busy")


def _chart(batch: Batch | None, now: datetime, hosts: list[PoolHost]
           ) -> tuple[list[dict[str, Any]], bool]:
    """POs finished per minute over the run (at most CHART_MINUTES), zeros included.

    The window starts at the run's first activity within the cap (a claim or a finish)
    and ends now while a live host works on the batch, else at its last finish; so a
    3-minute run shows 3 bars, not 30 with everything in the last. Also says whether
    the run is live (the page then adds a bar each minute).
    """
    live = batch is not None and any(h.batch_id == batch.pk for h in hosts)
    end = _minute(now)
    start = end
    if batch is not None:
        pos = PurchaseOrder.objects.filter(batch=batch).order_by()
        if not live:
            last = (pos.exclude(status__in=PENDING_STATUSES)
                    .aggregate(at=Max("last_attempt_at"))["at"])
            end = _minute(last) if last is not None else end
        cap = end - timedelta(minutes=CHART_MINUTES - 1)
        first = pos.filter(last_attempt_at__gte=cap).aggregate(at=Min("last_attempt_at"))["at"]
        start = min(end, _minute(first)) if first is not None else end
    minutes = int((end - start).total_seconds() // 60) + 1
    points = {start + timedelta(minutes=i): {"ok": 0, "failed": 0} for i in range(minutes)}
    if batch is not None:
        rows = (PurchaseOrder.objects.filter(batch=batch, last_attempt_at__gte=start,
                                             last_attempt_at__lt=end + timedelta(minutes=1))
                .exclude(status__in=PENDING_STATUSES).order_by()
                .annotate(minute=TruncMinute("last_attempt_at"))
                .values_list("minute", "status").annotate(n=Count("id")))
        for minute, status, n in rows:
            point = points.get(minute)
            if point is not None:
                point["ok" if status in SUCCESS_STATUSES else "failed"] += n
    chart = [{"t": int(minute.timestamp()), **point} for minute, point in points.items()]
    return chart, live


def _minute(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def _batches() -> list[dict[str, Any]]:
    batches = list(Batch.objects.order_by("-uploaded_at", "-id")[:BATCHES_SHOWN])
    counts: dict[tuple[int, str], int] = {}
    rows = (PurchaseOrder.objects.filter(batch__in=batches,
                                         status__in=(Status.QUEUED, *FAILURE_STATUSES))
            .order_by().values_list("batch", "status").annotate(n=Count("id")))
    for batch_id, status, n in rows:
        counts[(batch_id, status)] = n
    return [{
        "id": b.pk, "name": b.name, "po_count": b.po_count,
        "queued": counts.get((b.pk, Status.QUEUED), 0),
        "failed": sum(counts.get((b.pk, s), 0) for s in FAILURE_STATUSES),
    } for b in batches]


def _events() -> list[dict[str, Any]]:
    return [{"at": epoch(e.at), "host": e.host, "level": e.level, "kind": e.kind,
             "message": e.message} for e in PoolEvent.objects.order_by("-at")[:EVENTS_SHOWN]]


def _failures(batch: Batch | None) -> list[dict[str, Any]]:
    pos = PurchaseOrder.objects.filter(status__in=FAILURE_STATUSES)
    if batch is not None:
        pos = pos.filter(batch=batch)
    latest = list(pos.order_by("-last_attempt_at", "-id")[:FAILURES_SHOWN])
    # Each PO's latest attempt, and its latest one with a screenshot (the evidence).
    last: dict[int, Attempt] = {}
    shots: dict[int, Attempt] = {}
    for attempt in (Attempt.objects.filter(po__in=latest)
                    .only("id", "po_id", "attempt_number", "screenshot")
                    .order_by("po", "-attempt_number", "-id")):
        last.setdefault(attempt.po_id, attempt)
        if attempt.screenshot:
            shots.setdefault(attempt.po_id, attempt)
    return [_failure(po, shots.get(po.pk) or last.get(po.pk), po.pk in shots)
            for po in latest]


def _failure(po: PurchaseOrder, attempt: Attempt | None, shot: bool) -> dict[str, Any]:
    page = _url_or_none("po_detail", po.pk)
    return {
        "po_id": po.pk, "po_number": po.po_number, "batch_id": po.batch_id,
        "status": po.status, "reason": po.reason,
        # Shown clamped to a few lines; the whole of it (up to here) in the title.
        "message": po.message[:MESSAGE_CHARS],
        "attempts": po.attempts, "at": epoch(po.last_attempt_at), "url": page,
        "attempt_number": attempt.attempt_number if attempt else None,
        # The attempt on its PO's page: its message, steps, screenshot and page HTML.
        "attempt_url": f"{page}#attempt-{attempt.pk}" if page and attempt else None,
        "screenshot_url": (_url_or_none("attempt_screenshot", attempt.pk)
                           if attempt and shot else None),
    }


def _url_or_none(name: str, *args: Any) -> str | None:
    """Link to the batches app's pages when they exist (they land separately)."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None
