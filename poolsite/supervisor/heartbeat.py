"""A host's heartbeat and housekeeping.

Heartbeat (every step): the host's PoolHost row (pool state, pause reason, one card
per worker), the Run's figures, and the plan's progress and ETA to the dashboards.
Housekeeping: renew this host's leases every lease/3; every RECOVER_EVERY seconds put
the POs of expired leases back in the queue and mark the runs of hosts that stopped
beating as crashed; at sign-on, take back at once the work of supervisors of this
machine that died.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

import psutil
from django.db.models import Count
from django.utils import timezone

from pool_core import ProfileManager, WorkerPool
from pool_core.po_folder import sweep_stale_work
from poolsite.batches.models import PurchaseOrder, Run, Status
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.host_options import HostOptions
from poolsite.supervisor.models import HOST_STALE_AFTER, PoolHost, PoolPlan
from poolsite.supervisor.recording import Recorder
from poolsite.supervisor.task_source import DbTaskSource

log = logging.getLogger(__name__)
RECOVER_EVERY = 5.0  # seconds between sweeps for expired leases
ACTIVE_RUN_STATES = (Run.State.STARTING, Run.State.RUNNING, Run.State.PAUSED,
                     Run.State.STOPPING)


def mark_crashed_runs(live_hosts: set[str]) -> int:
    """Mark active runs of hosts that are no longer alive as crashed."""
    return (Run.objects.filter(state__in=ACTIVE_RUN_STATES).exclude(host__in=live_hosts)
            .update(state=Run.State.CRASHED, finished_at=timezone.now()))


def progress(plan: PoolPlan, metrics: dict[str, Any]) -> dict[str, Any]:
    """The plan's batch in figures: counts per status, total, rate and ETA."""
    if not plan.batch_id:
        return {"counts": {}, "total": 0}
    counts = dict(PurchaseOrder.objects.filter(batch=plan.batch_id).order_by()
                  .values_list("status").annotate(n=Count("id")))
    total = sum(counts.values())
    pending = counts.get(Status.QUEUED, 0) + counts.get(Status.RUNNING, 0)
    rate = metrics.get("throughput_per_minute") or 0
    eta = round(pending / rate * 60) if rate and pending else None
    return {"counts": counts, "total": total, "throughput_per_min": rate,
            "eta_seconds": eta}


class HostUpkeep:
    """The heartbeat and the housekeeping of one host (see the module docstring)."""

    def __init__(self, *, name: str, options: HostOptions, recorder: Recorder,
                 broadcaster: Broadcaster, source: DbTaskSource) -> None:
        self.name = name
        self.options = options
        self.lease = timedelta(seconds=options.lease_seconds)
        self.recorder = recorder
        self.broadcaster = broadcaster
        self.source = source
        self._last_renew = self._last_recover = 0.0

    # -- heartbeat --------------------------------------------------------------------------
    def beat(self, plan: PoolPlan, pool: WorkerPool | None, run: Run | None) -> None:
        status = pool.get_status() if pool is not None else None
        state = str(status["pool_status"]) if status else "IDLE"
        reason = (status or {}).get("pause_reason") or (
            plan.reason if plan.state != PoolPlan.State.RUNNING else "")
        metrics = status["performance_metrics"] if status else {}
        figures = progress(plan, metrics)
        if pool is not None:
            self.source.refresh_queued_count(
                (plan.batch_id, figures["counts"].get(Status.QUEUED, 0))
                if plan.batch_id else None)
        beat = dict(hostname=socket.gethostname(), pid=os.getpid(), state=state,
                    reason=reason, batch_id=run.batch_id if run else None,
                    pool_size=status["pool_size"] if status else 0,
                    workers=self._cards(status), metrics=metrics,
                    heartbeat_at=timezone.now(), stopped_at=None)
        # The row exists from sign-on; create it again only if someone deleted it.
        if not PoolHost.objects.filter(name=self.name).update(**beat):
            PoolHost.objects.create(name=self.name, **beat)
        self.broadcaster.pool({"host": self.name, "state": state, "reason": reason,
                               "plan_state": plan.state, "plan_version": plan.version,
                               "batch_id": plan.batch_id, **figures,
                               "sent_at": time.time() * 1000})
        if run is not None and status is not None:
            Run.objects.filter(pk=run.pk).update(
                heartbeat_at=timezone.now(), pool_size=status["pool_size"],
                pos_done=status["tasks_completed"] + status["tasks_failed"],
                pos_per_minute=metrics.get("throughput_per_minute"),
                p95_seconds=metrics.get("task_seconds_p95"), figures=metrics)

    def _cards(self, status: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The worker cards: the recorder's, with the pool's latest figures."""
        details = {int(d["id"]): d for d in status["worker_details"]} if status else {}
        cards = []
        for card in self.recorder.card_snapshot(set(details)):
            detail = details.get(card["worker_id"], {})
            card.update(pid=detail.get("pid"), memory_mb=detail.get("memory_mb"),
                        done=detail.get("tasks_done", card.get("done", 0)),
                        restarts=detail.get("restarts", card.get("restarts", 0)),
                        memory_limit_mb=self.options.memory_hard_mb)
            if detail.get("state") == "stopping":
                card["state"] = "stopping"
            cards.append(card)
        return cards

    # -- housekeeping -----------------------------------------------------------------------
    def housekeeping(self, *, now: bool = False) -> None:
        """Renew and recover leases when due (`now`: recover at once, as at sign-on)."""
        clock = time.monotonic()
        if clock - self._last_renew >= self.options.lease_seconds / 3:
            PurchaseOrder.objects.renew(self.name, self.lease)
            self._last_renew = clock
        if now or clock - self._last_recover >= RECOVER_EVERY:
            self._last_recover = clock
            PurchaseOrder.objects.recover_expired(self.options.max_attempts)
            live = set(PoolHost.objects.filter(
                stopped_at=None, heartbeat_at__gte=timezone.now() - HOST_STALE_AFTER)
                .values_list("name", flat=True))
            mark_crashed_runs(live | {self.name})

    def sweep_dead_local_hosts(self) -> None:
        """A supervisor of this machine that died (SIGKILL): take its work back now.

        Its POs go back to the queue at once (their attempt counted) instead of after the
        lease expiry, and its workers' Chromium trees and temp roots are removed.
        """
        report = ProfileManager().sweep_stale()
        stale_work = sweep_stale_work(self.options.output_root)
        log.info("swept leftovers of dead supervisors: %s; %d stale work folder(s)", report,
                 stale_work)
        here = socket.gethostname()
        for host in PoolHost.objects.filter(hostname=here, stopped_at=None).exclude(
                name=self.name):
            if psutil.pid_exists(host.pid) and host.pid != os.getpid():
                continue
            requeued, failed = PurchaseOrder.objects.recover_expired(
                self.options.max_attempts, host=host.name)
            PoolHost.objects.filter(pk=host.pk).update(stopped_at=timezone.now(), workers=[])
            mark_crashed_runs(set(PoolHost.objects.filter(stopped_at=None)
                                  .exclude(pk=host.pk).values_list("name", flat=True)))
            self.recorder.note("host_recovered", f"{host.name} had died: {requeued} PO(s) "
                               f"re-queued, {failed} failed", "warning")
