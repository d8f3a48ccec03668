"""From finished downloads to a published PO folder; evidence of what went wrong.

save() verifies every download (an HTML page posing as a file is refused and kept as
evidence; a file whose bytes and name disagree is kept with a warning), adds the PDFs
made here (the PO page, each Outlook message), decides the status (COMPLETED, PARTIAL,
NO_ATTACHMENTS with the sources looked at, FAILED), writes the manifest and publishes
the folder. keep_evidence() saves a screenshot and the page's HTML of a failed attempt.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import shutil
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from pool_core.attempt import Attempt, Outcome
from pool_core.downloads import Transfer
from pool_core.message_pdf import save_message_pdf
from pool_core.messages import FileRecord, POStatus
from pool_core.names import dedupe, safe_component, safe_filename
from pool_core.po_folder import MANIFEST_NAME, final_folder, folder_for, publish, write_manifest
from pool_core.po_page import SourceReading
from pool_core.reasons import Reason
from pool_core.verify import verify_file

log = logging.getLogger(__name__)

EVIDENCE_HTML_MAX_BYTES = 512 * 1024
EVIDENCE_TIMEOUT_MS = 5000
REJECTED_FILE_MAX_BYTES = 5 * 1024 * 1024  # a bad download is kept as evidence up to this
# HTML_PAGE too: a session that expired mid-PO serves its sign-in page instead.
TRANSIENT_DOWNLOAD_FAILURES = (Reason.DOWNLOAD_TIMEOUT, Reason.DOWNLOAD_FAILED, Reason.HTML_PAGE)
PUBLISHED = (POStatus.COMPLETED, POStatus.PARTIAL, POStatus.NO_ATTACHMENTS)


def page_pdf(pdf: bytes | None, name: str) -> list[tuple[str, bytes, str, str]]:
    return [] if pdf is None else [(name, pdf, "page-pdf", "")]


def message_pdfs(attempt: Attempt, page: Page, verified: list[Transfer],
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


def save(attempt: Attempt, transfers: list[Transfer], verified: list[Transfer],
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


def verify_transfer(attempt: Attempt, transfer: Transfer) -> bool:
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


def _manifest(attempt: Attempt, outcome: Outcome, records: list[FileRecord],
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


def wants_evidence(outcome: Outcome) -> bool:
    return outcome.retryable or outcome.status not in (POStatus.COMPLETED,
                                                       POStatus.NO_ATTACHMENTS)


def keep_evidence(page: Page, attempt: Attempt, outcome: Outcome) -> tuple[str, ...]:
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


def _evidence_folder(attempt: Attempt) -> Path:
    return Path(attempt.job.evidence_dir) / safe_component(attempt.task.batch, fallback="batch")


def _evidence_stem(attempt: Attempt, reason: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return safe_component(f"{attempt.task.po_number}-attempt{attempt.task.attempt}-"
                          f"{reason}-{stamp}")


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
