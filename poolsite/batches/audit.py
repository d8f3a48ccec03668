"""The audit trail of button presses: ControlAction rows, appended and never edited.

Who pressed what (the dashboard, the HTTP views, the admin, a command), when, with which
arguments, and what came of it. Part of the batches app (its models module imports it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class AppendOnlyError(RuntimeError):
    """An audit row was about to be changed or deleted."""


class ControlActionQuerySet(models.QuerySet["ControlAction"]):
    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("control actions are an audit trail and are never deleted")


class ControlAction(models.Model):
    """Who pressed what, when, with which arguments, and what came of it."""

    class Action(models.TextChoices):
        START = "start"
        PAUSE = "pause"
        RESUME = "resume"
        STOP = "stop"
        SCALE = "scale", "scale to N"
        RETRY_FAILED = "retry_failed", "retry failed"
        CANCEL_PO = "cancel_po", "cancel PO"
        UPLOAD = "upload", "upload batch"
        CAPTURE_SESSION = "capture_session", "capture site session"
        UPLOAD_SESSION = "upload_session", "upload site session"
        DELETE_SESSION = "delete_session", "delete site session"
        ADD_SITE = "add_site", "add site"
        CHANGE_SITE = "change_site", "change site"
        DELETE_SITE = "delete_site", "delete site"
        CREATE_API_TOKEN = "create_api_token", "create API token"
        REVOKE_API_TOKEN = "revoke_api_token", "revoke API token"

    class Outcome(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        REFUSED = "refused"
        FAILED = "failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                             blank=True, related_name="+")
    username = models.CharField(max_length=150, blank=True,
                                help_text="kept when the account is deleted")
    action = models.CharField(max_length=20, choices=Action.choices)
    batch = models.ForeignKey("batches.Batch", models.PROTECT, null=True, blank=True,
                              related_name="control_actions")
    run = models.ForeignKey("batches.Run", models.PROTECT, null=True, blank=True,
                            related_name="control_actions")
    po = models.ForeignKey("batches.PurchaseOrder", models.PROTECT, null=True, blank=True,
                           related_name="control_actions")
    arguments = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices,
                               default=Outcome.PENDING)
    outcome_message = models.TextField(blank=True)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.CharField(max_length=200, blank=True, help_text="host")

    objects = ControlActionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["outcome", "created_at"], name="action_pending")]

    def __str__(self) -> str:
        return f"{self.username or '?'}: {self.action} ({self.outcome})"

    @classmethod
    def record(cls, user: Any, action: str, *, outcome: str = Outcome.PENDING,
               outcome_message: str = "", **fields: Any) -> ControlAction:
        """Append one button press; `fields` are batch/run/po/arguments."""
        handled_at = None if outcome == cls.Outcome.PENDING else timezone.now()
        return cls.objects.create(
            user=user if user is not None and user.is_authenticated else None,
            username=getattr(user, "username", "") or "", action=action, outcome=outcome,
            outcome_message=outcome_message, handled_at=handled_at, **fields,
        )

    def settle(self, outcome: str, message: str = "", host: str = "",
               when: datetime | None = None) -> bool:
        """Record the outcome of a pending action once; False if already settled."""
        when = when or timezone.now()
        updated = ControlAction.objects.filter(pk=self.pk, outcome=self.Outcome.PENDING).update(
            outcome=outcome, outcome_message=message, handled_by=host, handled_at=when,
        )
        if updated:
            self.outcome, self.outcome_message = outcome, message
            self.handled_by, self.handled_at = host, when
        return bool(updated)

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise AppendOnlyError("control actions are appended, never edited (use settle())")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("control actions are an audit trail and are never deleted")
