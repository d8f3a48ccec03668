"""Live state of every supervisor host, so any web process can draw the dashboard.

Each `runpool` host upserts its PoolHost row about once a second (pool state, pause
reason, one card per worker); the dashboard's snapshot reads these rows, and the
channel layer carries the deltas in between. PoolEvent keeps the recent-events list
(worker crashed and replaced, PO retried, pool auto-paused) across page loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from django.db import models, transaction
from django.utils import timezone

# A host whose heartbeat is older than this is shown as gone (and its leases expire).
HOST_STALE_AFTER = timedelta(seconds=15)


class PoolHost(models.Model):
    """One running (or recently running) `runpool` supervisor."""

    name = models.CharField(max_length=200, unique=True)  # "hostname:pid"
    hostname = models.CharField(max_length=200)
    pid = models.IntegerField()
    state = models.CharField(max_length=20, default="IDLE")  # pool_core PoolStatus value
    reason = models.CharField(max_length=300, blank=True)  # why paused / in error
    batch = models.ForeignKey("batches.Batch", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    pool_size = models.IntegerField(default=0)
    workers = models.JSONField(default=list, blank=True)  # one dict per worker card
    metrics = models.JSONField(default=dict, blank=True)  # throughput, p95, ...
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now, db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    @property
    def is_alive(self) -> bool:
        return self.stopped_at is None and timezone.now() - self.heartbeat_at < HOST_STALE_AFTER


class PoolEvent(models.Model):
    """One line of the dashboard's recent-events list."""

    LEVELS = (("info", "info"), ("warning", "warning"), ("error", "error"))

    at = models.DateTimeField(default=timezone.now, db_index=True)
    host = models.CharField(max_length=200, blank=True)
    level = models.CharField(max_length=10, choices=LEVELS, default="info")
    kind = models.CharField(max_length=50)  # "worker_replaced", "po_retried", "auto_paused", …
    message = models.CharField(max_length=500)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind}: {self.message}"


class PoolPlan(models.Model):
    """What operators want the pool to do: one row, converged on by every host.

    Buttons change the plan (and append a ControlAction); each `runpool` host reads it
    on a wake-up or at least every poll interval and converges: joins the batch, pauses,
    resumes, resizes, stops. `version` grows on every change so a host applies each
    change once. A lost wake-up therefore costs at most one poll interval, and any
    number of hosts follow the same plan.
    """

    class State(models.TextChoices):
        IDLE = "idle"  # nothing to run
        RUNNING = "running"
        PAUSED = "paused"
        STOPPING = "stopping"  # hosts stop their pools, then the plan goes idle

    batch = models.ForeignKey("batches.Batch", null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices, default=State.IDLE)
    pool_size = models.PositiveSmallIntegerField(default=4)
    immediate_stop = models.BooleanField(default=False)
    reason = models.CharField(max_length=300, blank=True)  # e.g. "login required on demo"
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"plan v{self.version}: {self.state}"

    CHANGEABLE = ("batch", "state", "pool_size", "immediate_stop", "reason")

    @classmethod
    def current(cls) -> PoolPlan:
        plan, _ = cls.objects.get_or_create(pk=1)
        return plan

    @classmethod
    def transition(cls, *, from_version: int | None = None,
                   from_states: Iterable[str] | None = None,
                   check: Callable[[PoolPlan], None] | None = None,
                   **changes: Any) -> PoolPlan | None:
        """The one way to change the plan: apply `changes` and bump `version`, atomically.

        The row is locked while it is checked; the write is conditional on the version
        read, so it is applied once even where the lock is a no-op (SQLite). Returns the
        new plan, or None when the plan is no longer at `from_version` or in one of
        `from_states` (another host or operator moved it first). `check(plan)` may raise
        to refuse the change (the transaction is then rolled back).
        """
        unknown = set(changes) - set(cls.CHANGEABLE)
        if unknown:
            raise TypeError(f"a plan transition cannot change {sorted(unknown)}")
        if "reason" in changes:
            changes["reason"] = str(changes["reason"])[:300]
        with transaction.atomic():
            plan = cls.objects.select_for_update().get(pk=cls.current().pk)
            if from_version is not None and plan.version != from_version:
                return None
            if from_states is not None and plan.state not in tuple(from_states):
                return None
            if check is not None:
                check(plan)
            read = plan.version
            for name, value in changes.items():
                setattr(plan, name, value)
            plan.version, plan.updated_at = read + 1, timezone.now()
            fields = {name: getattr(plan, name) for name in changes}
            if not cls.objects.filter(pk=plan.pk, version=read).update(
                    version=plan.version, updated_at=plan.updated_at, **fields):
                return None
        return plan
