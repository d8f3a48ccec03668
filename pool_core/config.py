"""Configuration values a host builds and passes in; pool_core never reads os.environ.

The processing interface is one function per PO, run inside a worker process
(docs/worker_pool.md, "The processing function"):

    def process_fn(page: Page, task: Task, job: JobEnv) -> TaskResult: ...

* `WorkerPool(process_fn="package.module:function")` names it as an importable dotted
  path (spawn: the worker imports it; `package.module.function` works too). The default
  is `pool_core.simple_job:save_page_pdf` (open the URL, save a PDF of the page).
* `page` is the worker's Playwright page, in a context with downloads accepted, the
  session's storage state loaded and default timeouts of nav_timeout_s (with a base
  profile: the persistent context). The worker owns it: the job leaves it open and takes
  off whatever it added (routes, listeners), because after a PO that ended well
  (COMPLETED, PARTIAL, NO_ATTACHMENTS, PO_NOT_FOUND, ACCESS_DENIED; not retryable) the
  same page serves the next PO. After any other ending, or when the job left another
  page open, the worker closes the context and the next PO gets a new one. A new page is
  blank; a kept one still shows the last PO's document until the job navigates, so a
  job must not take what the page shows for its own PO before its navigation commits
  (process_po blanks it before evidence when it never did).
* `job.report_phase("downloading")` tells the dispatcher which phase the worker is in
  (dashboard, events). It is a plain callable field of JobEnv, built inside the worker;
  calling it is cheap (one pipe write).
* Request interception (the site's allow-list, `context.route`: url_guard.RequestGuard)
  is the job's business. Under it, with a site, the worker's browser connects only
  through the worker's egress proxy (egress_proxy.py), whatever the job does;
  `job.egress_failures()` lists the connections it did not make.
* Return a TaskResult: `retryable=True` requeues the PO (an attempt, up to the retry
  limit); `retry_after` (HTTP 429) delays the requeue; status LOGIN_REQUIRED pauses the
  pool. An exception escaping the job becomes FAILED/JOB_ERROR with its traceback
  (BROWSER_CRASH, retryable, when the browser died under it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pool_core.egress_proxy import EgressFailure
from pool_core.sites import SitePreset

DEFAULT_PROCESS_FN = "pool_core.simple_job:save_page_pdf"


def _no_failures() -> list[EgressFailure]:
    return []


def _ignore_phase(phase: str) -> None:
    """Default report_phase: nobody listens."""


@dataclass(frozen=True)
class HeadlessConfiguration:
    """Browser mode for every worker.

    A visible browser needs a display: the host passes it (e.g. the DISPLAY variable's
    value) because pool_core does not read the environment. Without one, asking for a
    visible browser is a ValueError unless `fallback_to_headless` is set.
    """

    headless: bool = True
    display: str | None = None
    fallback_to_headless: bool = False

    def effective_headless(self) -> bool:
        """Return whether workers run headless; raise ValueError if visible is impossible."""
        if self.headless:
            return True
        if self.display:
            return False
        if self.fallback_to_headless:
            return True
        raise ValueError(
            "a visible browser was requested (headless=False) but no display is available; "
            "pass HeadlessConfiguration(headless=False, display=':0'), or "
            "fallback_to_headless=True to run headless instead"
        )


@dataclass(frozen=True)
class JobEnv:
    """What a processing function may use besides its BrowserContext and Task."""

    worker_id: int
    output_root: str  # final documents: <output_root>/<batch>/...
    work_root: str  # this worker's scratch space (hidden work folders); removed with it
    evidence_dir: str  # screenshots/HTML of failed attempts (kept, under output_root)
    site: SitePreset | None
    nav_timeout_s: float
    download_timeout_s: float
    report_phase: Callable[[str], None] = field(default=_ignore_phase, compare=False,
                                                repr=False)
    # The connections the worker's egress proxy did not make since the last call.
    egress_failures: Callable[[], list[EgressFailure]] = field(
        default=_no_failures, compare=False, repr=False)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to start; pickled to the child (spawn)."""

    browser_path: str
    browser_args: tuple[str, ...]
    headless: bool
    process_fn: str
    output_root: str
    evidence_dir: str
    site: SitePreset | None
    nav_timeout_s: float
    download_timeout_s: float
    launch_timeout_s: float
    recycle_browser_after: int  # relaunch the browser after this many POs (0: never)
    node_options: str  # NODE_OPTIONS for the Playwright driver ("" leaves it unset)
    node_compile_cache: str  # NODE_COMPILE_CACHE folder shared by drivers ("": none)
    browser_nice: int  # niceness of the driver and browser processes (0: as the worker)
    owner_pid: int  # the pool's pid: the worker exits when it dies


MIN_WORKERS, MAX_WORKERS = 1, 8


def check_pool_size(size: Any) -> int:
    """A number of workers, or ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or not (
            MIN_WORKERS <= size <= MAX_WORKERS):
        raise ValueError(f"pool size must be an int from {MIN_WORKERS} to {MAX_WORKERS}, "
                         f"got {size!r}")
    return size


@dataclass(frozen=True)
class PoolOptions:
    """The dispatcher's knobs: WorkerPool's keyword options of the same names (seconds
    as `_s`), documented here once; ValueError for a negative retry budget."""

    max_task_timeout_s: float = 300.0
    startup_timeout_s: float = 30.0
    retry_limit: int = 2  # requeues charged to a PO after its first attempt (crashes too)
    retry_backoff_s: float = 0.5  # before a retried PO is handed out again
    # HTTP 429 requeues that do not burn the retry budget; later ones do, so a
    # rate-limited PO ends after a bounded number of attempts.
    max_rate_limit_requeues: int = 5
    pause_after_site_failures: int = 5  # consecutive HTTP_5xx/NETWORK results; 0: never
    # PSS of a worker's whole tree above which it is recycled after its PO (soft) or
    # killed, its PO retried as MEMORY_LIMIT (hard).
    memory_soft_limit_mb: float | None = 400.0
    memory_hard_limit_mb: float | None = 800.0
    memory_check_interval_s: float = 2.0  # between memory samples; also heartbeats
    poll_interval_s: float = 0.5  # how often an idle pool asks a silent source again

    def __post_init__(self) -> None:
        if self.retry_limit < 0 or self.max_rate_limit_requeues < 0:
            raise ValueError("retry_limit and max_rate_limit_requeues must be >= 0")
