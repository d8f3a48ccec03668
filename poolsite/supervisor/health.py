"""/healthz for load balancers and /metrics for Prometheus (text exposition 0.0.4).

Both are read-only GETs with no personal data, so they need no login; they read only
aggregates (a few indexed queries), which keeps them fast with 10,000s of POs.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from poolsite.batches.models import Attempt, PurchaseOrder, Status
from poolsite.supervisor.models import HOST_STALE_AFTER, PoolHost

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300)


def _live_hosts() -> list[PoolHost]:
    fresh = timezone.now() - HOST_STALE_AFTER
    return list(PoolHost.objects.filter(stopped_at=None, heartbeat_at__gte=fresh))


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Report database, supervisors and workers; 503 when the database is unreachable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception as exc:  # the point of a health check is to say so, not to crash
        return JsonResponse({"ok": False, "database": f"error: {exc.__class__.__name__}"},
                            status=503)
    hosts = _live_hosts()
    workers = sum(1 for host in hosts for card in host.workers
                  if card.get("state") not in ("dead", "stopped"))
    queued = PurchaseOrder.objects.filter(status=Status.QUEUED).count()
    body = {
        "ok": True,
        "database": database,
        "supervisors": [{"name": h.name, "state": h.state, "heartbeat_at": h.heartbeat_at}
                        for h in hosts],
        "supervisor_alive": bool(hosts),
        "workers_alive": workers,
        "queued": queued,
    }
    return JsonResponse(body)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: POs by status, attempt durations, workers, memory, queue."""
    lines: list[str] = []
    add = lines.append
    add("# HELP poolsite_pos Purchase orders by status (all batches).")
    add("# TYPE poolsite_pos gauge")
    counts = dict(PurchaseOrder.objects.order_by().values_list("status").annotate(n=Count("id")))
    for status in Status.values:
        add(f'poolsite_pos{{status="{status}"}} {counts.get(status, 0)}')
    add("# HELP poolsite_queue_depth POs waiting to be claimed.")
    add("# TYPE poolsite_queue_depth gauge")
    add(f"poolsite_queue_depth {counts.get(Status.QUEUED, 0)}")
    lines.extend(_duration_histogram())
    lines.extend(_worker_metrics(_live_hosts()))
    return HttpResponse("\n".join(lines) + "\n",
                        content_type="text/plain; version=0.0.4; charset=utf-8")


def _duration_histogram() -> list[str]:
    aggregates = {f"le_{b}": Count("id", filter=Q(duration__lte=b)) for b in DURATION_BUCKETS}
    row = Attempt.objects.filter(duration__isnull=False).aggregate(
        total=Count("id"), seconds=Sum("duration"), **aggregates)
    total_seconds = row["seconds"] or 0.0
    out = ["# HELP poolsite_attempt_duration_seconds Duration of PO attempts.",
           "# TYPE poolsite_attempt_duration_seconds histogram"]
    for bucket in DURATION_BUCKETS:
        out.append(f'poolsite_attempt_duration_seconds_bucket{{le="{bucket}"}} '
                   f"{row[f'le_{bucket}']}")
    out.append(f'poolsite_attempt_duration_seconds_bucket{{le="+Inf"}} {row["total"]}')
    out.append(f"poolsite_attempt_duration_seconds_count {row['total']}")
    out.append(f"poolsite_attempt_duration_seconds_sum {total_seconds:.3f}")
    return out


def _worker_metrics(hosts: list[PoolHost]) -> list[str]:
    by_state: dict[str, int] = {}
    memory: list[str] = []
    for host in hosts:
        for card in host.workers:
            state = str(card.get("state", "unknown"))
            by_state[state] = by_state.get(state, 0) + 1
            if card.get("memory_mb") is not None:
                memory.append(f'poolsite_worker_memory_bytes{{host="{_label(host.name)}",'
                              f'worker="{card.get("worker_id")}"}} '
                              f"{int(float(card['memory_mb']) * 1024 * 1024)}")
    out = ["# HELP poolsite_workers Workers by state, across live supervisors.",
           "# TYPE poolsite_workers gauge"]
    out += [f'poolsite_workers{{state="{_label(s)}"}} {n}' for s, n in sorted(by_state.items())]
    out += ["# HELP poolsite_worker_memory_bytes PSS of a worker's whole process tree.",
            "# TYPE poolsite_worker_memory_bytes gauge", *memory]
    out += ["# HELP poolsite_supervisors Live runpool supervisors.",
            "# TYPE poolsite_supervisors gauge", f"poolsite_supervisors {len(hosts)}"]
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
