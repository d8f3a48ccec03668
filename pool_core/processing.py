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
allow-list (an expired session sent to the identity provider) is LOGIN_REQUIRED when
the URL is a sign-in URL or the site's probe page is walled too; otherwise BLOCKED_URL.

The page is the worker's and may serve the next PO: everything an attempt hangs on it
(routes, the CDP guard, download listeners) comes off again, and the page stays open.
A kept page still shows the last PO's document until this PO's navigation commits, so
evidence of an attempt that never got that far blanks the page first.
"""

from __future__ import annotations

import email.utils
import fnmatch
import functools
import hashlib
import logging
import mimetypes
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Frame, Page, Response
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pool_core.config import JobEnv
from pool_core.downloads import (
    Batch,
    Transfer,
    finish_downloads,
    open_batch,
    start_downloads,
)
from pool_core.egress_proxy import EgressFailure
from pool_core.errors import UnsafePathError, UnsafeURLError, says_target_closed
from pool_core.message_pdf import save_message_pdf
from pool_core.messages import FileRecord, POStatus, SourceReport, Task, TaskResult
from pool_core.names import dedupe, safe_component, safe_filename
from pool_core.po_folder import (
    MANIFEST_NAME,
    discard,
    final_folder,
    folder_for,
    new_work_folder,
    publish,
    write_manifest,
)
from pool_core.po_page import (
    AttachmentLink,
    SourceReading,
    read_requisition_url,
    read_sources,
    read_supplier,
    read_verdict,
)
from pool_core.reasons import Reason, http_reason, requisition_reason
from pool_core.sites import SitePreset, load_preset
from pool_core.url_guard import RequestGuard
from pool_core.verify import verify_file

log = logging.getLogger(__name__)

EVIDENCE_HTML_MAX_BYTES = 512 * 1024
EVIDENCE_TIMEOUT_MS = 5000
REJECTED_FILE_MAX_BYTES = 5 * 1024 * 1024  # a bad download is kept as evidence up to this
DEFAULT_RETRY_AFTER_S = 30.0
MAX_RETRY_AFTER_S = 3600.0
# HTML_PAGE too: a session that expired mid-PO serves its sign-in page instead.
TRANSIENT_DOWNLOAD_FAILURES = (Reason.DOWNLOAD_TIMEOUT, Reason.DOWNLOAD_FAILED, Reason.HTML_PAGE)
LAYOUT_RETRIES = 1  # a page not of the known shape is tried once more, then failed
BLOCKED_REQUESTS_KEPT = 50  # sub-request URLs listed on the attempt (all are counted)
PUBLISHED = (POStatus.COMPLETED, POStatus.PARTIAL, POStatus.NO_ATTACHMENTS)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, before it becomes a TaskResult."""

    status: POStatus
    reason: str = ""
    message: str = ""
    retryable: bool = False
    retry_after: float | None = None
    files: tuple[FileRecord, ...] = ()
    folder: str = ""


class _Stop(Exception):
    """Ends an attempt early with an outcome (a login wall, a 429, a blocked URL...)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass
class _Attempt:
    """One attempt at one PO: its inputs, its timings, what it has seen so far."""

    task: Task
    job: JobEnv
    site: SitePreset
    guard: RequestGuard
    steps: dict[str, float] = field(default_factory=dict)
    supplier_seen: str = ""
    work: Path | None = None
    pdf_problem: str = ""  # why there is no page PDF (a headed browser cannot print)
    rejected: list[str] = field(default_factory=list)  # failed files kept as evidence
    readings: list[SourceReading] = field(default_factory=list)  # every source looked at
    downloads: list[Batch] = field(default_factory=list)  # listening until the attempt ends
    committed: bool = False  # a document of this attempt has replaced the handed one

    def open_batch(self, page: Page) -> Batch:
        """A new batch of downloads for the page as it is now (one per page visited)."""
        batch = open_batch(page)
        self.downloads.append(batch)
        return batch

    def note_commits(self, frame: Frame) -> None:
        """A "framenavigated" listener: the main frame now shows this attempt's page."""
        if frame.parent_frame is None:
            self.committed = True

    @contextmanager
    def step(self, name: str, *, report: bool = True) -> Iterator[None]:
        """Time a step (repeated names add up) and tell the supervisor the phase.

        Steps of a few milliseconds pass report=False: a dashboard refreshing ten times a
        second would never show them, and each report wakes the supervisor once.
        """
        if report:
            self.job.report_phase(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - started

    @property
    def nav_ms(self) -> float:
        return self.job.nav_timeout_s * 1000


def process_po(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Fetch, verify and file every document of one PO; never raise for PO-level problems."""
    site = job.site or _generic_site()
    attempt = _Attempt(task=task, job=job, site=site, guard=RequestGuard(site))
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
    except _Stop as stop:
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
        if guarded and _wants_evidence(outcome):
            with attempt.step("evidence"):
                evidence = _keep_evidence(page, attempt, outcome)
    finally:
        with attempt.step("close", report=False):
            _close(attempt, page)
    return _result(attempt, outcome, evidence)


@functools.cache
def _generic_site() -> SitePreset:
    return load_preset("generic")


def _harvest(attempt: _Attempt, page: Page, url: str) -> Outcome:
    site = attempt.site
    response = _open(attempt, page, url, "the PO page")
    _classify(attempt, page, response, "the PO page")
    attempt.supplier_seen = read_supplier(page, site)
    requisition = read_requisition_url(page, site)
    attempt.work = new_work_folder(attempt.job.output_root)
    taken = {MANIFEST_NAME}
    pdf_name = dedupe(safe_filename(f"{attempt.task.po_number} PO page.pdf"), taken)
    batch = attempt.open_batch(page)
    links = _fetch_sources(attempt, page, "po", batch)
    # The PO page is the PO's record, its comments rendered: print it while its files
    # download, and before anything can take the page elsewhere (the requisition).
    with attempt.step("pdf"):
        pdf = _print(attempt, page)
    _finish(attempt, page, batch, taken)
    if requisition and _wants_requisition(site.requisition_when_no_pdf, links):
        _open_requisition(attempt, page, requisition)
        batch = attempt.open_batch(page)
        _fetch_sources(attempt, page, "requisition", batch)
        _finish(attempt, page, batch, taken)
    transfers = [t for each in attempt.downloads for t in each.transfers]
    _stop_if_left_site(attempt, page)
    _stop_if_signed_out(attempt, transfers)
    _name_blocked_frames(attempt, transfers)
    with attempt.step("save", report=False):
        verified = [t for t in transfers if _verified(attempt, t)]
        messages = _message_pdfs(attempt, page, verified, taken)
        return _save(attempt, transfers, verified, [*messages, *_page_pdf(pdf, pdf_name)],
                     url)


def _fetch_sources(attempt: _Attempt, page: Page, kind: str, batch: Batch) -> list[AttachmentLink]:
    """Start every file of the page's sources; return them all (LAYOUT_UNKNOWN raises).

    Files already shown at `load` start at once (Coupa's header buttons are clicked one
    by one, a round trip each) while the rest renders (the comments app), then the rest.
    """
    with attempt.step("downloads"):
        here = page.url
        early = [link for reading in read_sources(page, attempt.site, kind, wait=False)
                 if reading.seen for link in reading.links]
        _start(attempt, page, batch, early)
    with attempt.step("attachments"):
        links = _read_sources(attempt, page, kind)
    if page.url != here:  # a click navigated instead of downloading
        raise _Stop(Outcome(POStatus.FAILED, Reason.CLICK_NAVIGATED,
                            f"clicking a file took the {kind} page to {page.url[:200]}",
                            retryable=True))
    started = {_link_key(link) for link in early}
    with attempt.step("downloads"):
        _start(attempt, page, batch, [x for x in links if _link_key(x) not in started])
    return links


def _link_key(link: AttachmentLink) -> str:
    return link.href or f"click:{link.click}"


def _start(attempt: _Attempt, page: Page, batch: Batch, links: list[AttachmentLink]) -> None:
    if not links:
        return
    refused = {link.href: why for link in links
               if link.href and (why := attempt.guard.problem(link.href))}
    start_downloads(page, batch, links, refused, attempt.job.download_timeout_s,
                    attempt.site.overlay_selectors, give_up=lambda: _sign_in_seen(attempt))


def _finish(attempt: _Attempt, page: Page, batch: Batch, taken: set[str]) -> None:
    assert attempt.work is not None
    with attempt.step("downloads"):
        finish_downloads(page, batch, attempt.work, attempt.job.download_timeout_s,
                         lambda suggested: dedupe(safe_filename(suggested), taken),
                         give_up=lambda: _sign_in_seen(attempt))


def _page_pdf(pdf: bytes | None, name: str) -> list[tuple[str, bytes, str, str]]:
    return [] if pdf is None else [(name, pdf, "page-pdf", "")]


def _message_pdfs(attempt: _Attempt, page: Page, verified: list[Transfer],
                  taken: set[str]) -> list[tuple[str, bytes, str, str]]:
    """A PDF of each Outlook message beside it, when extract-msg can read it."""
    assert attempt.work is not None
    made = []
    for transfer in verified:
        assert transfer.path is not None
        if transfer.path.suffix.lower() != ".msg" or transfer.warning:
            continue
        name = dedupe(safe_filename(f"{transfer.path.name}.pdf"), taken)
        target = attempt.work / name
        if save_message_pdf(page, transfer.path, target):
            made.append((name, target.read_bytes(), "message-pdf", transfer.link.place))
    return made


def _read_sources(attempt: _Attempt, page: Page, kind: str) -> list[AttachmentLink]:
    """Every file the page's sources show; LAYOUT_UNKNOWN when one is not understood."""
    readings = read_sources(page, attempt.site, kind, give_up=lambda: _sign_in_seen(attempt))
    attempt.readings.extend(readings)
    problems = [r.describe() for r in readings if not r.understood]
    if problems:  # a comments app whose data request was walled is no layout problem
        _stop_if_left_site(attempt, page)
        _stop_if_sent_to_sign_in(attempt)
        retry = attempt.task.attempt <= LAYOUT_RETRIES
        raise _Stop(Outcome(POStatus.FAILED, Reason.LAYOUT_UNKNOWN,
                            f"the {kind} page is not the shape the site preset describes: "
                            + "; ".join(problems), retryable=retry))
    return [link for reading in readings for link in reading.links]


def _wants_requisition(when_no_pdf: bool, links: list[AttachmentLink]) -> bool:
    if not links:
        return True
    return when_no_pdf and not any(
        (link.label or link.href).lower().split("?")[0].endswith(".pdf") for link in links)


def _open(attempt: _Attempt, page: Page, url: str, what: str) -> Response | None:
    with attempt.step("navigate"):
        try:
            return page.goto(url, wait_until="load", timeout=attempt.nav_ms)
        except PlaywrightTimeoutError:
            raise _Stop(Outcome(POStatus.TIMEOUT, Reason.NAV_TIMEOUT,
                                f"{what} did not load within {attempt.job.nav_timeout_s:g} s",
                                retryable=True)) from None
        except PlaywrightError as exc:
            _stop_if_left_site(attempt, page)
            if says_target_closed(exc):
                raise
            if "ERR_BLOCKED_BY_CLIENT" in str(exc):
                raise _Stop(Outcome(POStatus.FAILED, Reason.BLOCKED_URL,
                                    f"{what}: the browser refused {url}")) from None
            failure = _egress_failure(attempt, url)
            if failure is not None and failure.refused:
                raise _Stop(Outcome(POStatus.FAILED, Reason.BLOCKED_URL,
                                    f"{what}: refused {url}: {failure.reason}")) from None
            detail = failure.reason if failure is not None else _first_line(exc)
            raise _Stop(Outcome(POStatus.FAILED, Reason.NETWORK_ERROR,
                                f"{what} ({url}): {detail}", retryable=True)) from None


def _egress_failure(attempt: _Attempt, url: str) -> EgressFailure | None:
    """What the egress proxy said about `url`'s host, when it did not connect.

    The browser only reports ERR_SOCKS_CONNECTION_FAILED; the proxy knows whether the
    host was refused (a name that now resolves to a private address: DNS rebinding) or
    could not be reached.
    """
    host = (urlsplit(url).hostname or "").lower()
    failures = [f for f in attempt.job.egress_failures() if f.host.lower() == host]
    return failures[-1] if failures else None


def _classify(attempt: _Attempt, page: Page, response: Response | None, what: str) -> None:
    """Raise _Stop unless the page is a readable PO (or requisition) page."""
    with attempt.step("classify", report=False):
        _stop_if_left_site(attempt, page)
        status = response.status if response is not None else 0
        if status == 429:
            delay = _retry_after(response)
            raise _Stop(Outcome(POStatus.FAILED, Reason.RATE_LIMITED,
                                f"{what}: the site asked to wait {delay:g} s (HTTP 429)",
                                retryable=True, retry_after=delay))
        verdict = read_verdict(page, attempt.site)
        if verdict.login:
            raise _Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                                f"{what} shows the sign-in page ({page.url[:200]}): "
                                "the worker's session is not signed in"))
        if verdict.error_status in ("PO_NOT_FOUND", "ACCESS_DENIED"):
            raise _Stop(_error_page(POStatus(verdict.error_status), what, status))
        if status >= 500:
            raise _Stop(Outcome(POStatus.FAILED, http_reason(status),
                                f"{what}: the site answered HTTP {status}", retryable=True))
        if status in (404, 410):
            raise _Stop(_error_page(POStatus.PO_NOT_FOUND, what, status))
        if status in (401, 403):
            raise _Stop(_error_page(POStatus.ACCESS_DENIED, what, status))
        if status >= 400:
            raise _Stop(Outcome(POStatus.FAILED, http_reason(status),
                                f"{what}: the site answered HTTP {status}"))


def _error_page(status: POStatus, what: str, http_status: int) -> Outcome:
    text = "does not exist" if status == POStatus.PO_NOT_FOUND else "may not be viewed"
    return Outcome(status, Reason(status.value), f"{what} {text} (HTTP {http_status or '?'})")


def _print(attempt: _Attempt, page: Page) -> bytes | None:
    """The PO page as a PDF, or None (noted) when this browser cannot print."""
    try:
        return page.pdf()
    except PlaywrightError as exc:
        if says_target_closed(exc):
            raise
        attempt.pdf_problem = f"no page PDF: {_first_line(exc)}"
        log.warning("%s: %s", attempt.task.po_number, attempt.pdf_problem)
        return None


def _open_requisition(attempt: _Attempt, page: Page, url: str) -> None:
    """The PR fallback: open the PO's requisition, which has its own sources to read."""
    response = _open(attempt, page, url, "the requisition page")
    try:
        _classify(attempt, page, response, "the requisition page")
    except _Stop as stop:
        if stop.outcome.status not in (POStatus.PO_NOT_FOUND, POStatus.ACCESS_DENIED):
            raise
        # The PO itself was fine: it has no documents we can reach.
        raise _Stop(replace(stop.outcome, status=POStatus.NO_ATTACHMENTS,
                            reason=requisition_reason(stop.outcome.reason))) from None


def _save(attempt: _Attempt, transfers: list[Transfer], verified: list[Transfer],
          made: list[tuple[str, bytes, str, str]], url: str) -> Outcome:
    """Publish the verified files and the PDFs made here (name, bytes, source, place)."""
    assert attempt.work is not None
    task = attempt.task
    final = folder_for(final_folder(attempt.job.output_root, task.batch,
                                    task.supplier or attempt.supplier_seen, task.po_number),
                       task.po_number)
    relative = final.relative_to(Path(attempt.job.output_root).resolve())
    records = [_record(relative, t) for t in verified]
    for name, data, source, place in made:
        (attempt.work / name).write_bytes(data)
        records.append(FileRecord(name, str(relative / name), len(data),
                                  hashlib.sha256(data).hexdigest(), "application/pdf",
                                  source, url if source == "page-pdf" else "", place=place))
    outcome = _status_of(transfers, attempt.readings)
    if attempt.pdf_problem:
        outcome = replace(outcome, message=f"{outcome.message}; {attempt.pdf_problem}")
    if outcome.status not in PUBLISHED:
        return outcome
    manifest = _manifest(attempt, outcome, records, transfers, url)
    manifest_path = write_manifest(attempt.work, manifest)
    data = manifest_path.read_bytes()
    records.append(FileRecord(MANIFEST_NAME, str(relative / MANIFEST_NAME), len(data),
                              hashlib.sha256(data).hexdigest(), "application/json",
                              "manifest"))
    publish(attempt.work, final)
    attempt.work = None
    return replace(outcome, files=tuple(records), folder=str(relative))


def _verified(attempt: _Attempt, transfer: Transfer) -> bool:
    """Verify a finished download; a bad file goes to the evidence and is marked failed."""
    if transfer.failure or transfer.path is None:
        return False
    verdict = verify_file(transfer.path, transfer.path.name)
    if verdict.ok or verdict.reason == Reason.TYPE_MISMATCH:
        # A delivered document is never thrown away: a file whose bytes and name
        # disagree is kept and flagged. Only an HTML page posing as a file is refused.
        transfer.sha256 = verdict.sha256
        transfer.warning = verdict.detail
        return True
    transfer.failure, transfer.detail = verdict.reason, verdict.detail
    if 0 < verdict.size <= REJECTED_FILE_MAX_BYTES:
        folder = _evidence_folder(attempt)
        target = folder / safe_filename(f"{_evidence_stem(attempt, verdict.reason)}-"
                                        f"{transfer.path.name}")
        with suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.move(transfer.path, target)
            attempt.rejected.append(str(target))
    transfer.path.unlink(missing_ok=True)
    return False


def _record(relative: Path, transfer: Transfer) -> FileRecord:
    assert transfer.path is not None
    download = transfer.download
    return FileRecord(
        name=transfer.path.name, path=str(relative / transfer.path.name),
        size=transfer.path.stat().st_size, sha256=transfer.sha256,
        content_type=_content_type(transfer.path.name), source=transfer.link.source,
        source_url=download.url if download is not None else transfer.link.href,
        place=transfer.link.place, warning=transfer.warning)


def _status_of(transfers: list[Transfer], readings: list[SourceReading]) -> Outcome:
    if not transfers:
        looked = "; ".join(r.describe() for r in readings) or "the page lists no files"
        return Outcome(POStatus.NO_ATTACHMENTS, "", f"no attachments ({looked})")
    failed = [t for t in transfers if t.failure]
    good = len(transfers) - len(failed)
    summary = f"{good} of {len(transfers)} attachments downloaded and verified"
    flagged = [t for t in transfers if t.warning and not t.failure]
    if flagged:
        summary += (f"; {len(flagged)} kept with a warning ({flagged[0].warning[:120]})")
    if not failed:
        return Outcome(POStatus.COMPLETED, "", summary)
    first = failed[0]
    name = first.link.label or first.link.href or "an attachment"
    retryable = any(t.failure in TRANSIENT_DOWNLOAD_FAILURES for t in failed)
    status = POStatus.PARTIAL if good else POStatus.FAILED
    return Outcome(status, first.failure, f"{summary}; {name[:80]}: {first.detail[:200]}",
                   retryable=retryable)


def _manifest(attempt: _Attempt, outcome: Outcome, records: list[FileRecord],
              transfers: list[Transfer], url: str) -> dict[str, Any]:
    task = attempt.task
    return {
        "po_number": task.po_number, "supplier": task.supplier,
        "supplier_seen": attempt.supplier_seen, "batch": task.batch,
        "source_page": url, "status": outcome.status.value, "reason": outcome.reason,
        "message": outcome.message, "attempt": task.attempt,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": [{"name": r.name, "size": r.size, "sha256": r.sha256,
                   "content_type": r.content_type, "source": r.source, "place": r.place,
                   "source_url": r.source_url, "warning": r.warning} for r in records],
        "failed": [{"label": t.link.label, "url": t.link.href, "reason": t.failure,
                    "detail": t.detail} for t in transfers if t.failure],
        "sources": [{"page": r.page, "name": r.name, "seen": r.seen, "files": len(r.links),
                     "problem": r.problem} for r in attempt.readings],
        "subrequests_blocked": len(attempt.guard.subresources_blocked),
    }


def _stop_if_left_site(attempt: _Attempt, page: Page) -> None:
    """The page was sent off the allow-list: a sign-in elsewhere, or a PO that leaves."""
    if not attempt.guard.left_site:
        return
    url, why = attempt.guard.left_site[0]
    if _signed_out(attempt, page, url):
        raise _Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                            f"the site sent the browser to {url[:200]} (a sign-in page off "
                            "the allow-list): the worker's session is not signed in"))
    raise _Stop(Outcome(POStatus.FAILED, Reason.BLOCKED_URL,
                        f"the page tried to go to {url[:200]} ({why}); blocked"))


def _signed_out(attempt: _Attempt, page: Page, url: str) -> bool:
    """Whether leaving for `url` means the session ended: its URL says so, or the probe."""
    site = attempt.site
    if _is_sign_in(site, url):
        return True
    if not (site.probe_url and site.base_url):
        return False
    attempt.guard.left_site.clear()
    probe = site.probe_url.format(base=site.base_url)
    with attempt.step("probe"):
        try:
            page.goto(probe, wait_until="load", timeout=attempt.nav_ms)
        except PlaywrightError as exc:
            if says_target_closed(exc):
                raise
            return bool(attempt.guard.left_site)  # the probe page was sent away too
        return read_verdict(page, site).login


def _name_blocked_frames(attempt: _Attempt, transfers: list[Transfer]) -> None:
    """A download whose frame failed because the guard refused a hop is BLOCKED_URL."""
    if not attempt.guard.blocked_frames:
        return
    url, why = attempt.guard.blocked_frames[0]
    for transfer in transfers:
        if (transfer.failure == Reason.DOWNLOAD_FAILED
                and transfer.final_url.startswith("chrome-error:")):
            transfer.failure, transfer.detail = Reason.BLOCKED_URL, f"{url[:200]}: {why}"


def _stop_if_signed_out(attempt: _Attempt, transfers: list[Transfer]) -> None:
    """An attachment led to the sign-in page: the session expired during the PO."""
    for transfer in transfers:
        url = transfer.final_url
        if url and _is_sign_in(attempt.site, url):
            raise _Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                                f"an attachment led to the sign-in page ({url[:200]}): "
                                "the session expired during the PO"))
    if any(t.failure for t in transfers):
        _stop_if_sent_to_sign_in(attempt)


def _sign_in_seen(attempt: _Attempt) -> str:
    """Why waiting on the page is pointless: it or its requests were sent away, or ""."""
    if attempt.guard.left_site:
        return f"the page was sent to {attempt.guard.left_site[0][0][:200]}"
    url = _refused_sign_in(attempt)
    return f"a request of the page was sent to the sign-in page ({url[:200]})" if url else ""


def _stop_if_sent_to_sign_in(attempt: _Attempt) -> None:
    """A request of the page was redirected to a sign-in URL (and refused there)."""
    url = _refused_sign_in(attempt)
    if url:
        raise _Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                            f"a request of the page was sent to the sign-in page "
                            f"({url[:200]}): the session expired during the PO"))


def _refused_sign_in(attempt: _Attempt) -> str:
    """The first request the guard refused that was on its way to a sign-in page, or ""."""
    guard = attempt.guard
    refused = [url for url, _ in guard.blocked_frames] + guard.subresources_blocked
    return next((url for url in refused if _is_sign_in(attempt.site, url)), "")


def _is_sign_in(site: SitePreset, url: str) -> bool:
    return any(fnmatch.fnmatchcase(url, pattern) for pattern in site.login_url_patterns)


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


def _wants_evidence(outcome: Outcome) -> bool:
    return outcome.retryable or outcome.status not in (POStatus.COMPLETED,
                                                       POStatus.NO_ATTACHMENTS)


def _keep_evidence(page: Page, attempt: _Attempt, outcome: Outcome) -> tuple[str, ...]:
    """Save a screenshot and the (size-capped) HTML of what the worker saw."""
    task = attempt.task
    folder = _evidence_folder(attempt)
    stem = _evidence_stem(attempt, outcome.reason or outcome.status.value)
    saved: list[str] = list(attempt.rejected)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        log.warning("no evidence folder %s", folder, exc_info=True)
        return tuple(saved)
    shot, html = folder / f"{stem}.png", folder / f"{stem}.html"
    if outcome.status == POStatus.TIMEOUT:
        attempt.guard.stop_loading()  # else the page waits for the hung navigation
    if not attempt.committed:  # the page still shows the document it was handed with
        with suppress(PlaywrightError):
            page.goto("about:blank", timeout=EVIDENCE_TIMEOUT_MS)
    # Each on its own: a chrome-error page may refuse a screenshot yet show its HTML.
    try:
        page.screenshot(path=str(shot), timeout=EVIDENCE_TIMEOUT_MS)
        saved.append(str(shot))
    except (PlaywrightError, OSError):  # a full disk must not hide the PO's real outcome
        log.warning("no screenshot of %s", task.po_number, exc_info=True)
        with suppress(OSError):
            shot.unlink(missing_ok=True)  # no half-written PNG posing as evidence
    try:
        markup = page.locator("html").evaluate("e => e.outerHTML", timeout=EVIDENCE_TIMEOUT_MS)
        html.write_bytes(str(markup).encode("utf-8")[:EVIDENCE_HTML_MAX_BYTES])
        saved.append(str(html))
    except (PlaywrightError, OSError):
        log.warning("no HTML of %s", task.po_number, exc_info=True)
    return tuple(saved)


def _evidence_folder(attempt: _Attempt) -> Path:
    return Path(attempt.job.evidence_dir) / safe_component(attempt.task.batch, fallback="batch")


def _evidence_stem(attempt: _Attempt, reason: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return safe_component(f"{attempt.task.po_number}-attempt{attempt.task.attempt}-"
                          f"{reason}-{stamp}")


def _close(attempt: _Attempt, page: Page) -> None:
    """Take off what the attempt hung on the page; the page itself stays open."""
    discard(attempt.work)
    for batch in attempt.downloads:
        batch.stop_listening(page)
    attempt.guard.remove()
    page.remove_listener("framenavigated", attempt.note_commits)


def _result(attempt: _Attempt, outcome: Outcome, evidence: tuple[str, ...]) -> TaskResult:
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


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
