"""The engine's vocabulary shared with its host: reason codes and pause reasons.

pool_core defines them; a host (poolsite) imports them instead of spelling the strings
again. Both are StrEnums, so a value is the same string in a TaskResult, a PORecord,
a database row and JSON as before: stored data keeps working unchanged.

`TaskResult.reason` stays a `str`: besides the codes below it carries `HTTP_<status>`
(see http_reason) and `REQUISITION_<code>` (the requisition page's PO_NOT_FOUND or
ACCESS_DENIED; see requisition_reason).

Timeouts are two things: NAV_TIMEOUT (a page did not load within nav_timeout; the
attempt ends, the PO is retried) and TASK_TIMEOUT (the PO ran past max_task_timeout;
its worker's process tree is killed and the PO ends). Rows written before the split
say "TIMEOUT" (LEGACY_TIMEOUT) for both; TIMEOUT_REASONS lists all three.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Reason(enum.StrEnum):
    """Machine reason of a PO attempt's outcome ("" for a plain success)."""

    # the page (pool_core.processing)
    BAD_URL = "BAD_URL"  # no URL, and the site has no base_url to build one
    BLOCKED_URL = "BLOCKED_URL"  # off the allow-list (the page, a hop, a download)
    NAV_TIMEOUT = "NAV_TIMEOUT"  # a page did not load in time; retried
    NETWORK_ERROR = "NETWORK_ERROR"  # the page could not be reached; retried
    RATE_LIMITED = "RATE_LIMITED"  # HTTP 429; retried after Retry-After
    LOGIN_REQUIRED = "LOGIN_REQUIRED"  # a sign-in wall; the pool pauses
    PO_NOT_FOUND = "PO_NOT_FOUND"
    ACCESS_DENIED = "ACCESS_DENIED"
    LAYOUT_UNKNOWN = "LAYOUT_UNKNOWN"  # a source the preset names never rendered
    CLICK_NAVIGATED = "CLICK_NAVIGATED"  # clicking a file left the page
    BROWSER_ERROR = "BROWSER_ERROR"  # a Playwright error that is not a lost browser
    UNSAFE_PATH = "UNSAFE_PATH"
    OUTPUT_ERROR = "OUTPUT_ERROR"  # the documents could not be written
    # one attachment (pool_core.downloads, pool_core.verify)
    DOWNLOAD_TIMEOUT = "DOWNLOAD_TIMEOUT"
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"
    HTML_PAGE = "HTML_PAGE"  # an HTML page posing as the file (a sign-in page)
    TYPE_MISMATCH = "TYPE_MISMATCH"  # kept, flagged: bytes and name disagree
    MISSING = "MISSING"
    EMPTY = "EMPTY"
    # the worker (pool_core.worker, pool_core.simple_job)
    BROWSER_CRASH = "BROWSER_CRASH"
    BROWSER_LOST_BEFORE_START = "BROWSER_LOST_BEFORE_START"  # requeued without charge
    PLAYWRIGHT_TIMEOUT = "PLAYWRIGHT_TIMEOUT"  # a job's own Playwright call timed out
    JOB_ERROR = "JOB_ERROR"  # the processing function raised
    NETWORK = "NETWORK"  # simple_job: the page could not be reached
    # the engine (pool_core.dispatcher, pool_core.handles)
    TASK_TIMEOUT = "TASK_TIMEOUT"  # past max_task_timeout: the worker's tree killed
    MEMORY_LIMIT = "MEMORY_LIMIT"  # the worker's tree passed the hard memory limit
    WORKER_CRASHED = "WORKER_CRASHED"  # the worker process died under the PO
    STOP_TIMEOUT = "STOP_TIMEOUT"  # the pool stopped while the PO ran
    STOPPED = "STOPPED"  # the pool stopped before the PO (or its retry) ran


LEGACY_TIMEOUT = "TIMEOUT"  # both timeouts, in rows written before NAV_/TASK_TIMEOUT
TIMEOUT_REASONS: tuple[str, ...] = (Reason.NAV_TIMEOUT, Reason.TASK_TIMEOUT, LEGACY_TIMEOUT)
# Reasons that say the site, not the PO, is failing (HTTP 5xx, unreachable): enough of
# them in a row pause the pool with PauseReason.SITE_FAILING. Prefixes, for HTTP_<n>.
SITE_FAILURE_PREFIXES: tuple[str, ...] = ("HTTP_5", Reason.NETWORK)


def http_reason(status: int) -> str:
    """The reason of an HTTP error answer: HTTP_500, HTTP_418..."""
    return f"HTTP_{status}"


def requisition_reason(reason: str) -> str:
    """The reason of a requisition page's error (the PO itself has no documents)."""
    return f"REQUISITION_{reason}"


def is_site_failure(reason: str) -> bool:
    """Whether a reason says the site is failing (HTTP 5xx, network)."""
    return reason.startswith(SITE_FAILURE_PREFIXES)


class PauseReason(enum.StrEnum):
    """Why a pool is PAUSED."""

    REQUESTED = "REQUESTED"  # pause_processing() was called
    LOGIN_REQUIRED = "LOGIN_REQUIRED"  # a PO met a sign-in wall
    SITE_FAILING = "SITE_FAILING"  # pause_after_site_failures site failures in a row


@dataclass(frozen=True)
class Pause:
    """A pause: its reason and a human detail.

    str() is the text shown to people and stored by hosts (the pool's state reason, as
    before): "paused by request", "LOGIN_REQUIRED: <detail>", "SITE_FAILING: <detail>".
    from_text() reads such a text back (a host that stored it as text).
    """

    reason: PauseReason
    detail: str = ""

    @property
    def automatic(self) -> bool:
        """Whether the pool paused itself (not by request)."""
        return self.reason is not PauseReason.REQUESTED

    def __str__(self) -> str:
        if self.reason is PauseReason.REQUESTED:
            return "paused by request"
        return f"{self.reason}: {self.detail}"

    @classmethod
    def from_text(cls, text: str) -> Pause | None:
        """The automatic Pause a text written by str() stands for; None for other text."""
        for reason in (PauseReason.LOGIN_REQUIRED, PauseReason.SITE_FAILING):
            prefix = f"{reason}: "
            if text.startswith(prefix):
                return cls(reason, text[len(prefix):])
        return None
