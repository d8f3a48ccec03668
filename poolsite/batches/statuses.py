"""A PO's statuses and the groups of them the product asks about (pending, success, retry)."""

from __future__ import annotations

from django.db import models

from pool_core.messages import POStatus


class Status(models.TextChoices):
    """A PO's status: QUEUED/RUNNING while work is pending, then a final POStatus."""

    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    COMPLETED = POStatus.COMPLETED.value, "Completed"
    PARTIAL = POStatus.PARTIAL.value, "Partial"
    NO_ATTACHMENTS = POStatus.NO_ATTACHMENTS.value, "No attachments"
    PO_NOT_FOUND = POStatus.PO_NOT_FOUND.value, "PO not found"
    ACCESS_DENIED = POStatus.ACCESS_DENIED.value, "Access denied"
    LOGIN_REQUIRED = POStatus.LOGIN_REQUIRED.value, "Login required"
    TIMEOUT = POStatus.TIMEOUT.value, "Timeout"
    FAILED = POStatus.FAILED.value, "Failed"
    CANCELLED = POStatus.CANCELLED.value, "Cancelled"


PENDING_STATUSES = (Status.QUEUED, Status.RUNNING)
SUCCESS_STATUSES = tuple(Status(s.value) for s in POStatus if s.is_success)
# What "retry failed" puts back in the queue: every final status that is not a success.
RETRYABLE_STATUSES = tuple(
    Status(s.value) for s in POStatus if not s.is_success
)
