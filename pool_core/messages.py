"""Values that cross the process boundary between the dispatcher and its workers.

    dispatcher ──Task / None (stop)──▶ worker
    dispatcher ◀──Ready / StartupFailed / TaskReceived / Phase / TaskDone── worker

Only small frozen dataclasses and enums travel through the pipes (pickled); never
Playwright objects. Amounts stay Decimal end to end. A worker's exit code is a message
too: EXIT_* below. Reason codes live in pool_core.reasons.
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


# Exit codes of a worker process (0: told to stop; negative: killed by a signal).
EXIT_BROWSER_DIED = 3  # its browser died under a task (reported as TaskDone first)
EXIT_STARTUP_FAILED = 4  # after StartupFailed
EXIT_PARENT_DIED = 5  # its pipe closed: the dispatcher's process is gone


@dataclass(frozen=True)
class Ready:
    """The worker's browser is up: it waits for tasks."""

    pid: int
    at: float  # time.monotonic() (system-wide on Linux, comparable across processes)
    steps: tuple[tuple[str, float], ...] = ()  # start-up steps (name, at)


@dataclass(frozen=True)
class StartupFailed:
    """The worker could not start (its exit code follows: EXIT_STARTUP_FAILED)."""

    message: str
    remote_traceback: str


@dataclass(frozen=True)
class TaskReceived:
    """A task arrived (the distribution latency is measured from it)."""

    key: str
    at: float


@dataclass(frozen=True)
class Phase:
    """The job reports where it is in its task (JobEnv.report_phase)."""

    key: str
    phase: str


@dataclass(frozen=True)
class TaskDone:
    """One attempt ended."""

    result: TaskResult
    seconds: float
    at: float
    exiting: bool  # the worker exits after this message (browser died)
