"""WorkerPool's default job (no process_fn given): open the URL, save a PDF of the page.

poolsite runs pool_core.processing:process_po instead. This one writes

    <output_root>/<batch>/<po_number>/page.pdf
"""

from __future__ import annotations

import hashlib
import os
import re

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from pool_core.config import JobEnv
from pool_core.messages import FileRecord, POStatus, Task, TaskResult
from pool_core.reasons import Reason
from pool_core.url_guard import RequestGuard

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-system-safe, bounded version of an untrusted name."""
    name = _UNSAFE.sub("_", text).strip("._") or "_"
    return name[:80]


def save_page_pdf(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Open the PO's URL and save the page as a PDF, on the site's allow-list."""
    guard = RequestGuard(job.site) if job.site else None
    if guard is not None:
        guard.install(page.context)
        guard.watch(page)
    try:
        return _save_page_pdf(page, task, job, guard)
    finally:
        if guard is not None:
            guard.remove()


def _save_page_pdf(page: Page, task: Task, job: JobEnv,
                   guard: RequestGuard | None) -> TaskResult:
    job.report_phase("navigating")
    try:
        response = page.goto(task.url, wait_until="load", timeout=job.nav_timeout_s * 1000)
    except PlaywrightError as exc:
        if guard is not None and guard.left_site:
            return _left_site(task, job, guard.left_site[0])
        return _result(task, POStatus.FAILED, Reason.NETWORK, str(exc)[:300], retryable=True)
    status = response.status if response is not None else 0
    if job.site and job.site.is_sign_in_url(page.url):
        return _result(task, POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                       f"redirected to the sign-in page {page.url}")
    if status == 429:
        retry_after = response.headers.get("retry-after", "1") if response else "1"
        return _result(task, POStatus.FAILED, "HTTP_429", "rate limited", retryable=True,
                       retry_after=float(retry_after) if retry_after.isdigit() else 1.0)
    if status >= 500:
        return _result(task, POStatus.FAILED, f"HTTP_{status}", f"server answered {status}",
                       retryable=True)
    if status == 404:
        return _result(task, POStatus.PO_NOT_FOUND, "HTTP_404", "the PO page was not found")
    if status == 403:
        return _result(task, POStatus.ACCESS_DENIED, "HTTP_403", "access denied")
    job.report_phase("saving")
    folder_rel = os.path.join(safe_name(task.batch), safe_name(task.po_number))
    folder = os.path.join(job.output_root, folder_rel)
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, ".page.pdf.partial")
    data = page.pdf(path=partial)
    os.replace(partial, os.path.join(folder, "page.pdf"))
    record = FileRecord(name="page.pdf", path=os.path.join(folder_rel, "page.pdf"),
                        size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                        content_type="application/pdf", source="page-pdf",
                        source_url=task.url)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.COMPLETED,
                      files=(record,), folder=folder_rel)


def _left_site(task: Task, job: JobEnv, refused: tuple[str, str]) -> TaskResult:
    """The page was sent off the allow-list: to sign in (its URL says so), or elsewhere."""
    url, why = refused
    if job.site and job.site.is_sign_in_url(url):
        return _result(task, POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                       f"redirected to the sign-in page {url[:300]}")
    return _result(task, POStatus.FAILED, Reason.BLOCKED_URL, f"refused {url[:300]}: {why}")


def _result(task: Task, status: POStatus, reason: str, message: str, *,
            retryable: bool = False, retry_after: float | None = None) -> TaskResult:
    return TaskResult(key=task.key, po_number=task.po_number, status=status, reason=reason,
                      message=message, retryable=retryable, retry_after=retry_after)
