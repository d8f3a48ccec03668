"""Processing functions for engine tests (importable in spawned workers)."""

from __future__ import annotations

import sys

from playwright.sync_api import BrowserContext

from pool_core.config import JobEnv
from pool_core.messages import POStatus, Task, TaskResult


def linger(context: BrowserContext, task: Task, job: JobEnv) -> TaskResult:
    """Open the page and stay on it for a while (lets a memory-eating page eat)."""
    page = context.new_page()
    job.report_phase("navigating")
    page.goto(task.url)
    job.report_phase("lingering")
    page.wait_for_timeout(8000)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.NO_ATTACHMENTS)


def explode(context: BrowserContext, task: Task, job: JobEnv) -> TaskResult:
    """A job with a bug."""
    raise ZeroDivisionError("job bug")


def report_modules(context: BrowserContext, task: Task, job: JobEnv) -> TaskResult:
    """Say which big modules the worker process holds (in the record's message)."""
    loaded = sorted(name for name in ("django", "playwright", "pool_core") if name in sys.modules)
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.NO_ATTACHMENTS,
                      message=",".join(loaded))
