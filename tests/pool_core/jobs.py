"""Processing functions for engine tests (importable in spawned workers)."""

from __future__ import annotations

import sys

import psutil
from playwright._impl._errors import TargetClosedError  # what a waiting call raises
from playwright.sync_api import Page

from pool_core.config import JobEnv
from pool_core.messages import POStatus, Task, TaskResult
from pool_core.process_tree import is_browser_main, wait_gone


def linger(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Open the page and stay on it for a while (lets a memory-eating page eat)."""
    job.report_phase("navigating")
    page.goto(task.url)
    job.report_phase("lingering")
    page.wait_for_timeout(8000)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.NO_ATTACHMENTS)


def explode(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """A job with a bug."""
    raise ZeroDivisionError("job bug")


def report_modules(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Say which big modules the worker process holds (in the record's message)."""
    loaded = sorted(name for name in ("django", "playwright", "pool_core") if name in sys.modules)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.NO_ATTACHMENTS,
                      message=",".join(loaded))


def count_visits(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Say what page the job got and how many POs this tab has seen (sessionStorage lives
    as long as the tab). `?then=fail` in the URL fails the PO, `?then=page` leaves a
    second page open."""
    handed = page.url
    page.goto(task.url)
    seen = page.evaluate("sessionStorage.seen = String(Number(sessionStorage.seen || 0) + 1)")
    status = POStatus.NO_ATTACHMENTS
    if "then=fail" in task.url:
        status = POStatus.FAILED
    elif "then=page" in task.url:
        page.context.new_page()  # (the browser blocks popups: a job's own page)
    return TaskResult(key=task.key, po_number=task.po_number, status=status,
                      message=f"{handed} {seen}")


def heap_at_start(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """Say how much of the renderer's JavaScript heap is in use when the PO starts (in
    the record's message, bytes), then open the PO's page."""
    session = page.context.new_cdp_session(page)
    used = session.send("Runtime.getHeapUsage")["usedSize"]
    session.detach()
    page.goto(task.url)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.NO_ATTACHMENTS,
                      message=str(int(used)))



def lose_the_browser_unseen(page: Page, task: Task, job: JobEnv) -> TaskResult:
    """First attempt: SIGKILL the browser, then fail the way Playwright fails a call that
    was waiting (TargetClosedError) before the worker has heard of the disconnect: no
    Playwright call runs between the kill and the error. Later attempts: open the page."""
    if task.attempt == 1:
        browsers = [p for p in psutil.Process().children(recursive=True) if is_browser_main(p)]
        assert len(browsers) == 1, browsers
        browsers[0].kill()
        assert not wait_gone(browsers, 5)
        raise TargetClosedError(
            "Page.wait_for_event: Target page, context or browser has been closed")
    page.goto(task.url)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.NO_ATTACHMENTS)

