"""Values that cross the process boundary between the supervisor and its workers.

Only small frozen dataclasses and enums travel through the pipes (spawn context,
pickled); never Playwright objects. Amounts stay Decimal end to end.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal


class POStatus(enum.StrEnum):
    """Final status of one PO; the first three are successes (docs/worker_pool.md)."""

    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    NO_ATTACHMENTS = "NO_ATTACHMENTS"
    PO_NOT_FOUND = "PO_NOT_FOUND"
    ACCESS_DENIED = "ACCESS_DENIED"
    LOGIN_REQUIRED = "LOGIN_REQUIRED"
    TIMEOUT = "TIMEOUT"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_success(self) -> bool:
        return self in (POStatus.COMPLETED, POStatus.PARTIAL, POStatus.NO_ATTACHMENTS)


@dataclass(frozen=True)
class Task:
    """One PO to process, as a worker receives it.

    `key` identifies the PO to whoever supplied it (a DB id, or the index in the
    in-memory list); `attempt` counts from 1.
    """

    key: str
    po_number: str
    supplier: str
    url: str
    amount: Decimal
    batch: str = "default"
    attempt: int = 1
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FileRecord:
    """A verified file saved for a PO; `path` is relative to the output root."""

    name: str
    path: str
    size: int
    sha256: str
    content_type: str
    source: str  # "po" | "requisition" | "page-pdf" | "message-pdf" | "manifest"
    source_url: str = ""
    place: str = ""  # where on the page: the preset's attachment source ("header", ...)
    warning: str = ""  # kept, but not what it claims to be (its bytes and name disagree)


@dataclass(frozen=True)
class SourceReport:
    """What one attachment source of one page showed: the evidence behind a count."""

    page: str  # "po" | "requisition"
    name: str  # the preset's name for the source: "header", "comments", ...
    seen: bool  # its container was on the page
    files: int
    problem: str = ""  # why it was not understood (LAYOUT_UNKNOWN); "" when it was


@dataclass(frozen=True)
class TaskResult:
    """What one attempt at one PO produced.

    `retryable` asks the pool to try again (5xx, network, stalled download);
    `retry_after` is a delay in seconds the site asked for (HTTP 429), which the
    pool honours before handing the PO out again.
    """

    key: str
    po_number: str
    status: POStatus
    reason: str = ""
    message: str = ""
    files: tuple[FileRecord, ...] = ()
    folder: str = ""
    supplier_seen: str = ""
    retryable: bool = False
    retry_after: float | None = None
    steps: tuple[tuple[str, float], ...] = ()  # (step name, seconds) in order
    evidence: tuple[str, ...] = ()  # screenshot / HTML paths of a failed attempt
    remote_traceback: str = ""
    sources: tuple[SourceReport, ...] = ()  # every place looked at for files
    blocked_requests: tuple[str, ...] = ()  # sub-requests off the allow-list, aborted
