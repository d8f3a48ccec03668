"""Batches of POs, the runs that process them, and the audit trail of what happened.

    Site ──< Batch ──< PurchaseOrder ──< Attempt >── Run >── Batch
               └── BatchSource └──< Document
    ControlAction: every button press (who, what, when, outcome); append-only.

The DB is the source of truth for work: the runpool supervisor claims QUEUED POs with a
lease (`leased_by`, `lease_expires_at`), records one Attempt per try and the Documents
of a finished PO in one transaction. Every change of a PO's status, lease or attempt
count is a method of `PurchaseOrder.objects` (lifecycle.py); ControlAction lives in
audit.py and the statuses in statuses.py, both importable from here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from pool_core.sites import SitePreset
from poolsite.batches.audit import AppendOnlyError, ControlAction, ControlActionQuerySet
from poolsite.batches.lifecycle import POQuerySet
from poolsite.batches.statuses import (
    PENDING_STATUSES,
    RETRYABLE_STATUSES,
    SUCCESS_STATUSES,
    Status,
)

# Some are defined beside this module; every importer finds them here.
__all__ = [
    "AMOUNT_DIGITS", "AMOUNT_PLACES", "DEMO_SITE", "PENDING_STATUSES", "RETRYABLE_STATUSES",
    "SUCCESS_STATUSES", "AppendOnlyError", "Attempt", "Batch", "BatchSource",
    "ControlAction", "ControlActionQuerySet", "Document", "POQuerySet", "PurchaseOrder",
    "Run", "Site", "Status", "amount_text",
]

DEMO_SITE = "Demo site"  # kept pointing at the demo by `runpool --with-demo-site`
# 15 significant digits: SQLite stores DECIMAL columns as 8-byte floats (NUMERIC affinity),
# which round-trip exactly up to 15 digits; PostgreSQL's numeric is exact anyway.
AMOUNT_DIGITS = 15
AMOUNT_PLACES = 4


class Site(models.Model):
    """A procurement site this deployment works on: a preset plus one tenant's address.

    Operators keep these on the Sites page; a batch is uploaded for one of them. The
    workers use the preset with the tenant's host and `extra_hosts` (hosts its
    downloads come from) added to the allow-list (`tenant_preset`).
    """

    name = models.CharField(max_length=100, unique=True)
    preset = models.CharField(max_length=50, help_text="one of the loaded site presets")
    base_url = models.CharField("address", max_length=500,
                                help_text="the tenant, e.g. https://acme.coupahost.com")
    extra_hosts = models.JSONField(
        "extra allowed hosts", default=list, blank=True,
        help_text="hosts its downloads come from: names or *.domain patterns")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    AUDITED = ("name", "preset", "base_url", "extra_hosts")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("site_edit", args=[self.pk])

    def clean(self) -> None:
        """Normalise the address and hosts; refuse what the preset would refuse."""
        from django.core.exceptions import ValidationError

        from poolsite.batches import site_rules

        errors: dict[str, str] = {}
        presets = site_rules.site_presets()
        if self.preset not in presets:
            errors["preset"] = (f"no site preset {self.preset!r} is loaded (loaded: "
                                f"{', '.join(sorted(presets))})")
        try:
            self.base_url = site_rules.normalise_base_url(self.base_url)
        except ValueError as exc:
            errors["base_url"] = str(exc)
        try:
            self.extra_hosts = site_rules.normalise_hosts(self.extra_hosts or [])
        except ValueError as exc:
            errors["extra_hosts"] = str(exc)
        if not errors:
            try:
                site_rules.tenant_preset(presets[self.preset], self.base_url,
                                         self.extra_hosts)
            except ValueError as exc:
                errors["base_url"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def tenant_preset(self, presets: dict[str, SitePreset] | None = None) -> SitePreset:
        """The preset for this tenant; KeyError when its preset is no longer loaded."""
        from poolsite.batches.site_rules import site_presets

        presets = site_presets() if presets is None else presets
        if self.preset not in presets:
            raise KeyError(f"site {self.name!r} uses preset {self.preset!r}, which is not "
                           f"loaded (loaded: {', '.join(sorted(presets))})")
        return presets[self.preset].for_tenant(self.base_url, tuple(self.extra_hosts or ()))

    @classmethod
    def ensure(cls, name: str, preset: str, base_url: str, *, via: str) -> Site:
        """Create the site, or point it at `base_url`, for a command (audited as `via`)."""
        base_url = base_url.rstrip("/")
        with transaction.atomic():
            site = cls.objects.select_for_update().filter(name=name).first()
            if site is None:
                site = cls.objects.create(name=name, preset=preset, base_url=base_url)
                site.record_change(None, ControlAction.Action.ADD_SITE, via=via)
            elif (site.preset, site.base_url) != (preset, base_url):
                before = site.audited_values()
                site.preset, site.base_url, site.updated_at = preset, base_url, timezone.now()
                site.save()
                site.record_change(None, ControlAction.Action.CHANGE_SITE, before, via=via)
        return site

    def audited_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.AUDITED}

    def record_change(self, user: Any, action: str, before: dict[str, Any] | None = None,
                      via: str = "") -> ControlAction:
        """Append the create/change/delete of this site to the audit trail.

        `before` holds the audited values before the change; the record keeps each
        changed field as [old, new]. `via` names a command when no one is signed in.
        """
        after = self.audited_values() if action != ControlAction.Action.DELETE_SITE else {}
        before = before or {}
        changes = {name: [before.get(name), after.get(name)]
                   for name in self.AUDITED if before.get(name) != after.get(name)}
        arguments = {"site_id": self.pk, "site": self.name, "changes": changes}
        message = f"site {self.name!r}: " + (
            ", ".join(sorted(changes)) + " changed" if action == ControlAction.Action.CHANGE_SITE
            else str(ControlAction.Action(action).label))
        if user is None:
            return ControlAction.objects.create(
                username=via or "cli", action=action, arguments={**arguments, "via": via},
                outcome=ControlAction.Outcome.DONE, outcome_message=message,
                handled_at=timezone.now())
        return ControlAction.record(user, action, arguments=arguments,
                                    outcome=ControlAction.Outcome.DONE,
                                    outcome_message=message)


class Batch(models.Model):
    """One uploaded file of POs, created whole or not at all (batch_import)."""

    name = models.CharField(max_length=200)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now, db_index=True)
    source_name = models.CharField(max_length=255)
    source_sha256 = models.CharField(max_length=64, db_index=True)
    source_size = models.PositiveBigIntegerField(default=0)
    source_sheet = models.CharField(max_length=100, blank=True,
                                    help_text="the XLSX sheet the POs were read from")
    # The configured site; site_preset and site_base_url copy it for older code and for
    # batches uploaded before sites were configured in the app.
    site = models.ForeignKey(Site, models.PROTECT, null=True, blank=True,
                             related_name="batches")
    site_preset = models.CharField(max_length=50)
    site_base_url = models.CharField(max_length=500, blank=True)
    notes = models.TextField(blank=True)
    po_count = models.PositiveIntegerField(default=0)
    extra_columns = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-uploaded_at", "-id"]
        verbose_name_plural = "batches"
        permissions = [
            ("control_pool", "Can start, pause and stop runs, retry and cancel POs"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"

    def get_absolute_url(self) -> str:
        return reverse("batch_detail", args=[self.pk])

    def status_counts(self) -> dict[str, int]:
        """Return {status: count} for every status, zeros included (one query)."""
        counts = dict.fromkeys(Status.values, 0)
        rows = self.pos.order_by().values_list("status").annotate(n=Count("id"))
        for status, n in rows:
            counts[status] = n
        return counts

    def summary(self) -> dict[str, int]:
        """Return the operator's headline figures: total, pending, succeeded, failed."""
        counts = self.status_counts()
        return {
            "total": sum(counts.values()),
            "pending": sum(counts[s] for s in PENDING_STATUSES),
            "succeeded": sum(counts[s] for s in SUCCESS_STATUSES),
            "failed": sum(counts[s] for s in RETRYABLE_STATUSES),
        }

    def output_dir_name(self) -> str:
        """Return the batch's folder name under the output root."""
        return f"batch-{self.pk}"

    def site_name(self) -> str:
        return self.site.name if self.site_id and self.site else self.site_preset

    def has_source(self) -> bool:
        return BatchSource.objects.filter(batch=self.pk).exists()


class BatchSource(models.Model):
    """The file a batch was uploaded from, byte for byte, for the results workbook.

    In the database rather than under POOL_DATA_DIR: it is written in the batch's own
    transaction (no batch without its file, no orphan file), every web process of a
    scale-out deployment can serve it (POOL_DATA_DIR is per machine), and it is backed
    up with the batch. Its size is capped by POOL_MAX_UPLOAD_BYTES at upload; a table of
    its own keeps the bytes out of every Batch query.
    """

    batch = models.OneToOneField(Batch, models.CASCADE, primary_key=True,
                                 related_name="source")
    kind = models.CharField(max_length=10)  # "csv" | "xlsx"
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"source of batch {self.batch_id}"


class PurchaseOrder(models.Model):
    """One PO of a batch: its input row, its current status and its lease."""

    batch = models.ForeignKey(Batch, models.CASCADE, related_name="pos")
    row_number = models.PositiveIntegerField(default=0, help_text="row in the source file")
    po_number = models.CharField("PO number", max_length=64)
    supplier = models.CharField(max_length=255, blank=True,
                                help_text="from the file; empty when it had no supplier column")
    supplier_seen = models.CharField("supplier on the page", max_length=255, blank=True)
    url = models.CharField("URL", max_length=2000)
    amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES,
                                 null=True, blank=True)
    extra = models.JSONField("extra columns", default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    reason = models.CharField(max_length=100, blank=True)
    message = models.TextField(blank=True)
    # Tries charged to its retry budget, the one under way included (see lifecycle.py).
    attempts = models.PositiveIntegerField(default=0)
    output_folder = models.CharField(max_length=1000, blank=True,
                                     help_text="relative to the output root")
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    objects = POQuerySet.as_manager()

    class Meta:
        ordering = ["batch", "id"]
        verbose_name = "purchase order"
        constraints = [
            models.UniqueConstraint(fields=["batch", "po_number"], name="po_unique_in_batch"),
            models.CheckConstraint(condition=Q(status__in=Status.values),
                                   name="po_status_known"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="po_amount_not_negative"),
            models.CheckConstraint(condition=~Q(po_number=""), name="po_number_not_empty"),
        ]
        indexes = [
            # "next queued PO of a batch" and the counts per status of a batch.
            models.Index(fields=["batch", "status", "id"], name="po_batch_status"),
            # Expired leases of crashed hosts, across batches.
            models.Index(fields=["status", "lease_expires_at"], name="po_lease"),
            models.Index(fields=["po_number"], name="po_number"),
            models.Index(fields=["last_attempt_at"], name="po_last_attempt"),
        ]

    def __str__(self) -> str:
        return self.po_number

    def get_absolute_url(self) -> str:
        return reverse("po_detail", args=[self.pk])

    @property
    def is_final(self) -> bool:
        return self.status not in PENDING_STATUSES

    @property
    def is_retryable(self) -> bool:
        return self.status in RETRYABLE_STATUSES

    def amount_text(self) -> str:
        return amount_text(self.amount)

    @property
    def supplier_shown(self) -> str:
        """The file's supplier, else the one the worker read from the PO page."""
        return self.supplier or self.supplier_seen


def amount_text(amount: Decimal | None) -> str:
    """Show an amount with at least two decimals and no trailing noise: 12.5000 -> 12.50."""
    if amount is None:
        return ""
    cents = amount.quantize(Decimal("0.01"))
    if cents == amount:
        return f"{cents:f}"
    return f"{amount.normalize():f}"


class Run(models.Model):
    """One runpool session working through a batch on one host."""

    class State(models.TextChoices):
        STARTING = "starting"
        RUNNING = "running"
        PAUSED = "paused"
        STOPPING = "stopping"
        FINISHED = "finished"
        CRASHED = "crashed"

    batch = models.ForeignKey(Batch, models.CASCADE, related_name="runs")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    host = models.CharField(max_length=200)
    pool_size = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=20, choices=State.choices, default=State.STARTING)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    pos_done = models.PositiveIntegerField(default=0)
    pos_per_minute = models.FloatField(null=True, blank=True)
    p95_seconds = models.FloatField(null=True, blank=True)
    figures = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["state", "host"], name="run_state_host")]

    def __str__(self) -> str:
        return f"run #{self.pk} of {self.batch_id} on {self.host}"

    @property
    def is_active(self) -> bool:
        return self.state in (self.State.STARTING, self.State.RUNNING, self.State.PAUSED,
                              self.State.STOPPING)


class Attempt(models.Model):
    """One try at one PO by one worker; never edited after it is recorded."""

    po = models.ForeignKey(PurchaseOrder, models.CASCADE, related_name="attempt_set")
    run = models.ForeignKey(Run, models.SET_NULL, null=True, blank=True,
                            related_name="attempts")
    host = models.CharField(max_length=200, blank=True)
    worker_id = models.CharField(max_length=50, blank=True)
    attempt_number = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    status = models.CharField(max_length=20, choices=Status.choices)
    retryable = models.BooleanField(default=False)
    reason = models.CharField(max_length=100, blank=True)
    message = models.TextField(blank=True)
    steps = models.JSONField(default=list, blank=True)
    screenshot = models.CharField(max_length=1000, blank=True,
                                  help_text="PNG of a failure, relative to the output root")
    html_evidence = models.CharField(max_length=1000, blank=True,
                                     help_text="HTML of a failure, relative to the output root")
    remote_traceback = models.TextField(blank=True)
    sources = models.JSONField(
        default=list, blank=True,
        help_text="every place the attempt looked for files: page, source, seen, files")
    blocked_requests = models.JSONField(
        default=list, blank=True,
        help_text="sub-requests to hosts off the allow-list, aborted (scripts, beacons...)")

    class Meta:
        ordering = ["po", "attempt_number", "id"]
        indexes = [models.Index(fields=["started_at"], name="attempt_started")]

    def __str__(self) -> str:
        return f"{self.po_id} attempt {self.attempt_number}: {self.status}"


class Document(models.Model):
    """A verified file saved for a PO."""

    class Source(models.TextChoices):
        PO = "po", "PO page"
        REQUISITION = "requisition", "Requisition"
        PAGE_PDF = "page-pdf", "Page PDF"
        MESSAGE_PDF = "message-pdf", "PDF of an e-mail"
        MANIFEST = "manifest", "Manifest"

    po = models.ForeignKey(PurchaseOrder, models.CASCADE, related_name="documents")
    attempt = models.ForeignKey(Attempt, models.SET_NULL, null=True, blank=True,
                                related_name="documents")
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=200, blank=True)
    path = models.CharField(max_length=1000, help_text="relative to the output root")
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.PO)
    place = models.CharField(max_length=50, blank=True,
                             help_text="where on the page: header, comments, ...")
    source_url = models.CharField(max_length=2000, blank=True)
    warning = models.CharField(max_length=500, blank=True,
                               help_text="kept, but its bytes do not match its name")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["po", "id"]
        constraints = [
            models.UniqueConstraint(fields=["po", "path"], name="document_unique_path"),
        ]
        indexes = [models.Index(fields=["sha256"], name="document_sha256")]

    def __str__(self) -> str:
        return self.name
