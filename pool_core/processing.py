"""Process one PO: from its page to verified documents in its output folder.

    process_po(page, task, job) -> TaskResult                (inside a worker process)

    navigate ─▶ classify ─▶ sources ─────────────────▶ pdf ─▶ finish ─┬──────────────┬─▶ save
    (guarded)   login wall,  files shown at load start  (comment     └ none: the    ┘  (each
                error page,  (header clicks) while the   files         requisition,    verified)
                429, 5xx,    rest renders; then the      download      the same way
                left site    rest (comment links)        meanwhile)

PO-level problems never raise: they come back as a status, a short machine reason
(a pool_core.reasons code: HTTP_500, NETWORK_ERROR, NAV_TIMEOUT, LOGIN_REQUIRED,
BLOCKED_URL, LAYOUT_UNKNOWN, DOWNLOAD_TIMEOUT, ...) and a human message; `retryable`
and `retry_after` ask the engine to requeue the PO. Only a browser that died under the
job raises, so the engine can tell a crash from a PO. Every failed attempt leaves a
screenshot and the page's HTML in `job.evidence_dir`.

A negative answer needs evidence: NO_ATTACHMENTS only when every attachment source the
preset names for the page was seen and was empty (the result lists each one); a source
that never rendered fails the PO as LAYOUT_UNKNOWN. The main frame leaving the site's
allow-list is LOGIN_REQUIRED or BLOCKED_URL (pool_core.sign_in).

This module holds the page-level flow, top to bottom; the rest of the attempt lives in
pool_core.attempt (its state), pool_core.sources (attachment sources and downloads),
pool_core.sign_in (is the session gone?) and pool_core.filing (verify, save, evidence).

The page is the worker's and may serve the next PO: everything an attempt hangs on it
(routes, the CDP guard, download listeners) comes off again, and the page stays open.
A kept page still shows the last PO's document until this PO's navigation commits, so
evidence of an attempt that never got that far blanks the page first.
"""

from __future__ import annotations

import email.utils
import functools
import logging
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pool_core.attempt import Attempt, Outcome, Stop
from pool_core.config import JobEnv
from pool_core.egress_proxy import EgressFailure
from pool_core.errors import UnsafePathError, UnsafeURLError, says_target_closed
from pool_core.filing import (
    keep_evidence,
    message_pdfs,
    page_pdf,
    save,
    verify_transfer,
    wants_evidence,
)
from pool_core.messages import POStatus, SourceReport, Task, TaskResult
from pool_core.names import dedupe, safe_filename
from pool_core.po_folder import MANIFEST_NAME, discard, new_work_folder
from pool_core.po_page import read_requisition_url, read_supplier, read_verdict
from pool_core.reasons import Reason, http_reason, requisition_reason
from pool_core.sign_in import name_blocked_frames, stop_if_left_site, stop_if_signed_out
from pool_core.sites import SitePreset, load_preset
from pool_core.sources import fetch_sources, finish_batch, wants_requisition
from pool_core.url_guard import RequestGuard

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_S = 30.0
MAX_RETRY_AFTER_S = 3600.0
BLOCKED_REQUESTS_KEPT = 50  # sub-request URLs listed on the attempt (all are counted)


def process_po(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Fetch, verify and file every document of one PO; never raise for PO-level problems."""
    site = job.site or _generic_site()
    attempt = Attempt(task=task, job=job, site=site, guard=RequestGuard(site))
    evidence: tuple[str, ...] = ()
    try:
        url = site.po_url(task.po_number, task.url)
    except UnsafeURLError as exc:  # a scheme or host the allow-list refuses
        return _result(attempt, Outcome(POStatus.FAILED, Reason.BLOCKED_URL, str(exc)), ())
    except ValueError as exc:  # no url, and the site has no base_url to build one
        return _result(attempt, Outcome(POStatus.FAILED, Reason.BAD_URL, str(exc)), ())
    guarded = False  # evidence only from a page this attempt has set up
    try:
        with attempt.step("setup"):
            page.on("framenavigated", attempt.note_commits)
            attempt.guard.install(page.context)
            attempt.guard.watch(page)
        guarded = True
        outcome = _harvest(attempt, page, url)
    except Stop as stop:
        outcome = stop.outcome
    except UnsafePathError as exc:
        outcome = Outcome(POStatus.FAILED, Reason.UNSAFE_PATH, str(exc))
    except PlaywrightError as exc:
        if says_target_closed(exc):
            raise  # the engine records BROWSER_CRASH and retries elsewhere
        outcome = Outcome(POStatus.FAILED, Reason.BROWSER_ERROR, _first_line(exc), retryable=True)
    except OSError as exc:
        log.exception("writing the documents of %s failed", task.po_number)
        outcome = Outcome(POStatus.FAILED, Reason.OUTPUT_ERROR, f"cannot write the output: {exc}")
    try:
        if guarded and wants_evidence(outcome):
            with attempt.step("evidence"):
                evidence = keep_evidence(page, attempt, outcome)
    finally:
        with attempt.step("close", report=False):
            _close(attempt, page)
    return _result(attempt, outcome, evidence)


@functools.cache
def _generic_site() -> SitePreset:
    return load_preset("generic")


def _harvest(attempt: Attempt, page: Page, url: str) -> Outcome:
    site = attempt.site
    response = _open(attempt, page, url, "the PO page")
    _classify(attempt, page, response, "the PO page")
    attempt.supplier_seen = read_supplier(page, site)
    requisition = read_requisition_url(page, site)
    attempt.work = new_work_folder(attempt.job.output_root)
    taken = {MANIFEST_NAME}
    pdf_name = dedupe(safe_filename(f"{attempt.task.po_number} PO page.pdf"), taken)
    batch = attempt.open_batch(page)
    links = fetch_sources(attempt, page, "po", batch)
    # The PO page is the PO's record, its comments rendered: print it while its files
    # download, and before anything can take the page elsewhere (the requisition).
    with attempt.step("pdf"):
        pdf = _print(attempt, page)
    finish_batch(attempt, page, batch, taken)
    if requisition and wants_requisition(site.requisition_when_no_pdf, links):
        _open_requisition(attempt, page, requisition)
        batch = attempt.open_batch(page)
        fetch_sources(attempt, page, "requisition", batch)
        finish_batch(attempt, page, batch, taken)
    transfers = [t for each in attempt.downloads for t in each.transfers]
    stop_if_left_site(attempt, page)
    stop_if_signed_out(attempt, transfers)
    name_blocked_frames(attempt, transfers)
    with attempt.step("save", report=False):
        verified = [t for t in transfers if verify_transfer(attempt, t)]
        messages = message_pdfs(attempt, page, verified, taken)
        return save(attempt, transfers, verified, [*messages, *page_pdf(pdf, pdf_name)],
                     url)


def _open(attempt: Attempt, page: Page, url: str, what: str) -> Response | None:
    with attempt.step("navigate"):
        try:
            return page.goto(url, wait_until="load", timeout=attempt.nav_ms)
        except PlaywrightTimeoutError:
            raise Stop(Outcome(POStatus.TIMEOUT, Reason.NAV_TIMEOUT,
                                f"{what} did not load within {attempt.job.nav_timeout_s:g} s",
                                retryable=True)) from None
        except PlaywrightError as exc:
            stop_if_left_site(attempt, page)
            if says_target_closed(exc):
                raise
            if "ERR_BLOCKED_BY_CLIENT" in str(exc):
                raise Stop(Outcome(POStatus.FAILED, Reason.BLOCKED_URL,
                                    f"{what}: the browser refused {url}")) from None
            failure = _egress_failure(attempt, url)
            if failure is not None and failure.refused:
                raise Stop(Outcome(POStatus.FAILED, Reason.BLOCKED_URL,
                                    f"{what}: refused {url}: {failure.reason}")) from None
            detail = failure.reason if failure is not None else _first_line(exc)
            raise Stop(Outcome(POStatus.FAILED, Reason.NETWORK_ERROR,
                                f"{what} ({url}): {detail}", retryable=True)) from None


def _egress_failure(attempt: Attempt, url: str) -> EgressFailure | None:
    """What the egress proxy said about `url`'s host, when it did not connect.

    The browser only reports ERR_SOCKS_CONNECTION_FAILED; the proxy knows whether the
    host was refused (a name that now resolves to a private address: DNS rebinding) or
    could not be reached.
    """
    host = (urlsplit(url).hostname or "").lower()
    failures = [f for f in attempt.job.egress_failures() if f.host.lower() == host]
    return failures[-1] if failures else None


def _classify(attempt: Attempt, page: Page, response: Response | None, what: str) -> None:
    """Raise Stop unless the page is a readable PO (or requisition) page."""
    with attempt.step("classify", report=False):
        stop_if_left_site(attempt, page)
        status = response.status if response is not None else 0
        if status == 429:
            delay = _retry_after(response)
            raise Stop(Outcome(POStatus.FAILED, Reason.RATE_LIMITED,
                                f"{what}: the site asked to wait {delay:g} s (HTTP 429)",
                                retryable=True, retry_after=delay))
        verdict = read_verdict(page, attempt.site)
        if verdict.login:
            raise Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                                f"{what} shows the sign-in page ({page.url[:200]}): "
                                "the worker's session is not signed in"))
        if verdict.error_status in ("PO_NOT_FOUND", "ACCESS_DENIED"):
            raise Stop(_error_page(POStatus(verdict.error_status), what, status))
        if status >= 500:
            raise Stop(Outcome(POStatus.FAILED, http_reason(status),
                                f"{what}: the site answered HTTP {status}", retryable=True))
        if status in (404, 410):
            raise Stop(_error_page(POStatus.PO_NOT_FOUND, what, status))
        if status in (401, 403):
            raise Stop(_error_page(POStatus.ACCESS_DENIED, what, status))
        if status >= 400:
            raise Stop(Outcome(POStatus.FAILED, http_reason(status),
                                f"{what}: the site answered HTTP {status}"))


def _error_page(status: POStatus, what: str, http_status: int) -> Outcome:
    text = "does not exist" if status == POStatus.PO_NOT_FOUND else "may not be viewed"
    return Outcome(status, Reason(status.value), f"{what} {text} (HTTP {http_status or '?'})")


def _print(attempt: Attempt, page: Page) -> bytes | None:
    """The PO page as a PDF, or None (noted) when this browser cannot print."""
    try:
        return page.pdf()
    except PlaywrightError as exc:
        if says_target_closed(exc):
            raise
        attempt.pdf_problem = f"no page PDF: {_first_line(exc)}"
        log.warning("%s: %s", attempt.task.po_number, attempt.pdf_problem)
        return None


def _open_requisition(attempt: Attempt, page: Page, url: str) -> None:
    """The PR fallback: open the PO's requisition, which has its own sources to read."""
    response = _open(attempt, page, url, "the requisition page")
    try:
        _classify(attempt, page, response, "the requisition page")
    except Stop as stop:
        if stop.outcome.status not in (POStatus.PO_NOT_FOUND, POStatus.ACCESS_DENIED):
            raise
        # The PO itself was fine: it has no documents we can reach.
        raise Stop(replace(stop.outcome, status=POStatus.NO_ATTACHMENTS,
                            reason=requisition_reason(stop.outcome.reason))) from None


def _retry_after(response: Response | None) -> float:
    """Seconds from a Retry-After header (delta or HTTP date), bounded."""
    value = (response.headers.get("retry-after", "") if response is not None else "").strip()
    delay = DEFAULT_RETRY_AFTER_S
    if value.replace(".", "", 1).isdigit():
        delay = float(value)
    elif value:
        try:
            when = email.utils.parsedate_to_datetime(value)
            delay = (when - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            pass
    return min(max(delay, 1.0), MAX_RETRY_AFTER_S)


def _close(attempt: Attempt, page: Page) -> None:
    """Take off what the attempt hung on the page; the page itself stays open."""
    discard(attempt.work)
    for batch in attempt.downloads:
        batch.stop_listening(page)
    attempt.guard.remove()
    page.remove_listener("framenavigated", attempt.note_commits)


def _result(attempt: Attempt, outcome: Outcome, evidence: tuple[str, ...]) -> TaskResult:
    return TaskResult(
        key=attempt.task.key, po_number=attempt.task.po_number, status=outcome.status,
        reason=outcome.reason, message=outcome.message, files=outcome.files,
        folder=outcome.folder, supplier_seen=attempt.supplier_seen,
        retryable=outcome.retryable, retry_after=outcome.retry_after,
        steps=tuple((name, round(seconds, 4)) for name, seconds in attempt.steps.items()),
        evidence=evidence,
        sources=tuple(SourceReport(r.page, r.name, r.seen, len(r.links), r.problem)
                      for r in attempt.readings),
        blocked_requests=tuple(attempt.guard.subresources_blocked[:BLOCKED_REQUESTS_KEPT]))


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
