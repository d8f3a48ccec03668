"""Who is told what: notification targets, the events claimed, and each send (audit).

    NotificationTarget: an e-mail address list or one Apprise URL, the events it wants,
        for one Site or every site (site = null), kept by operators.
    NotificationEvent: one row per event ("batch_finished:12:v40"), its key unique: the
        host that inserts it is the one that notifies, whichever hosts saw the event.
    Notification: one send to one target (of an event, or a "send test" press): when,
        by which host or for which user, whether it went, and why not. Never the URL.
    TargetChange: who added, changed or deleted a target, and what changed (masked).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone


class Event(models.TextChoices):
    BATCH_FINISHED = "batch_finished", "batch finished"
    AUTO_PAUSED = "auto_paused", "pool paused itself"
    CRASH_LOOP = "crash_loop", "workers crash again and again"
    DAILY_SUMMARY = "daily_summary", "daily summary"


def mask_url(url: str) -> str:
    """An Apprise URL as pages and logs may show it: its scheme only (`json://…`)."""
    scheme = urlsplit(url.strip()).scheme
    return f"{scheme}://…" if scheme else "…"


class NotificationTarget(models.Model):
    """Where notifications go: e-mail addresses, or one Apprise URL (a secret)."""

    class Kind(models.TextChoices):
        EMAIL = "email", "e-mail"
        APPRISE = "apprise", "Apprise URL (chat, webhook, …)"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.EMAIL)
    # E-mail: addresses separated by commas. Apprise: the URL, which holds its tokens.
    address = models.TextField()
    events = models.JSONField(default=list, help_text="Event values this target wants")
    site = models.ForeignKey("batches.Site", models.CASCADE, null=True, blank=True,
                             related_name="notification_targets",
                             help_text="empty: every site")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.shown_address})"

    @property
    def shown_address(self) -> str:
        """The address as pages, logs and the audit show it (Apprise URLs masked)."""
        return mask_url(self.address) if self.kind == self.Kind.APPRISE else self.address

    def recipients(self) -> list[str]:
        return [a.strip() for a in self.address.split(",") if a.strip()]

    def wants(self, event: str, site_id: int | None) -> bool:
        return (self.enabled and event in (self.events or [])
                and (self.site_id is None or self.site_id == site_id))

    def event_labels(self) -> list[str]:
        return [str(Event(e).label) for e in self.events or [] if e in Event.values]

    def audited_values(self) -> dict[str, Any]:
        """What the audit keeps of this target: the Apprise URL masked."""
        return {"name": self.name, "kind": self.kind, "address": self.shown_address,
                "events": list(self.events or []),
                "site": self.site.name if self.site_id and self.site else "",
                "enabled": self.enabled}

    def record_change(self, user: Any, action: str,
                      before: dict[str, Any] | None = None) -> TargetChange:
        """Append the add/change/delete of this target to its audit (TargetChange).

        A changed Apprise URL shows as a change of `address` whose masked old and new
        values may look alike: the URL itself is never kept.
        """
        after = self.audited_values() if action != TargetChange.Action.DELETE else {}
        before = before or {}
        changes = {name: [before.get(name), after.get(name)]
                   for name in set(before) | set(after) if before.get(name) != after.get(name)}
        if action == TargetChange.Action.CHANGE and before.get("address") == after.get(
                "address") and self._address_changed:
            changes["address"] = [before["address"], after["address"]]
        return TargetChange.objects.create(
            target=self if action != TargetChange.Action.DELETE else None,
            target_name=self.name, action=action,
            user=user if getattr(user, "is_authenticated", False) else None,
            username=getattr(user, "username", "") or "", changes=changes)

    _address_changed = False  # set by the form when the saved address was replaced


class TargetChange(models.Model):
    """Who added, changed or deleted a notification target, and what changed (audit)."""

    class Action(models.TextChoices):
        ADD = "add"
        CHANGE = "change"
        DELETE = "delete"

    target = models.ForeignKey(NotificationTarget, models.SET_NULL, null=True, blank=True,
                               related_name="changes")
    target_name = models.CharField(max_length=100)
    action = models.CharField(max_length=10, choices=Action.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                             blank=True, related_name="+")
    username = models.CharField(max_length=150, blank=True)
    changes = models.JSONField(default=dict, blank=True,
                               help_text="field: [old, new]; Apprise URLs masked")
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.username or '?'}: {self.action} {self.target_name}"


class NotificationEvent(models.Model):
    """One event notified: inserting its unique key is the claim to notify it."""

    key = models.CharField(max_length=200, unique=True)  # e.g. "batch_finished:12:v40"
    event = models.CharField(max_length=20, choices=Event.choices)
    batch = models.ForeignKey("batches.Batch", models.SET_NULL, null=True, blank=True,
                              related_name="+")
    host = models.CharField(max_length=200, blank=True, help_text="the host that claimed it")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.key


class Notification(models.Model):
    """One send to one target: the audit of what was sent, when, and whether it went."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    TEST = "test"
    EVENTS = [*Event.choices, (TEST, "test")]

    notified = models.ForeignKey(NotificationEvent, models.CASCADE, null=True, blank=True,
                                 related_name="notifications")
    target = models.ForeignKey(NotificationTarget, models.SET_NULL, null=True, blank=True,
                               related_name="notifications")
    target_name = models.CharField(max_length=100, help_text="kept when the target goes")
    shown_address = models.CharField(max_length=500, help_text="Apprise URLs masked")
    event = models.CharField(max_length=20, choices=EVENTS)
    subject = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                     blank=True, related_name="+",
                                     help_text="who pressed 'send test'")
    host = models.CharField(max_length=200, blank=True, help_text="who sent it")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True)
    ok = models.BooleanField(null=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "created_at"], name="notification_state")]

    def __str__(self) -> str:
        return f"{self.event} to {self.target_name}: {self.state}"
