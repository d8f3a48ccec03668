"""One attempt at one PO while it runs: what it has seen (Attempt), how it ends (Outcome).

An Outcome is how an attempt ended, before pool_core.processing makes it a TaskResult.
Stop carries an Outcome out of the flow from wherever the attempt learns it is over (a
sign-in wall, a 429, a blocked URL...).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Frame, Page

from pool_core.config import JobEnv
from pool_core.downloads import Batch, open_batch
from pool_core.messages import FileRecord, POStatus, Task
from pool_core.po_page import SourceReading
from pool_core.sites import SitePreset
from pool_core.url_guard import RequestGuard


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


class Stop(Exception):
    """Ends an attempt early with an outcome (a login wall, a 429, a blocked URL...)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass
class Attempt:
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
        """Time a step (repeated names add up) and tell the dispatcher the phase.

        Steps of a few milliseconds pass report=False: a dashboard refreshing ten times a
        second would never show them, and each report wakes the dispatcher once.
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
