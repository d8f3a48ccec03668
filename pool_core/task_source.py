"""Where workers' POs come from: the pool pulls from a task source.

`start_processing(po_list)` wraps the list in an InMemoryTaskSource; a host can feed
more POs while running (`WorkerPool.submit`). The durable DB source (poolsite's)
implements the same protocol. The pool owns retries and records; a source only hands
out tasks, takes them back, and hears final outcomes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from urllib.parse import urlsplit

from pool_core.events import PORecord
from pool_core.messages import Task
from pool_core.sites import SitePreset

REQUIRED_FIELDS = ("po_number", "supplier", "url", "amount")


class TaskSource(Protocol):
    """What the pool needs from a source of work. Every method must be thread-safe."""

    def set_wakeup(self, wakeup: Callable[[], None]) -> None:
        """Remember a callable to call whenever new work becomes available."""

    def claim(self) -> Task | None:
        """Return the next task that is ready now, or None."""

    def next_ready_at(self) -> float | None:
        """Return when (time.monotonic()) a delayed task becomes ready, None if unknown."""

    def retry(self, task: Task, delay: float) -> None:
        """Take `task` back to be handed out again after `delay` seconds."""

    def finish(self, record: PORecord) -> None:
        """Hear the final outcome of a PO (persist it, release a lease, ...)."""

    def drain(self) -> list[Task]:
        """Remove and return every unclaimed task (on stop they become CANCELLED)."""

    def pending(self) -> int:
        """Return how many tasks wait (delayed retries included)."""


class InMemoryTaskSource:
    """A FIFO of tasks with delayed retries, for `start_processing(po_list)`."""

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._lock = threading.Lock()
        self._ready: deque[Task] = deque(tasks)
        self._delayed: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._wakeup: Callable[[], None] | None = None

    def set_wakeup(self, wakeup: Callable[[], None]) -> None:
        self._wakeup = wakeup

    def add(self, tasks: Iterable[Task]) -> None:
        """Append tasks and wake the pool."""
        with self._lock:
            self._ready.extend(tasks)
        if self._wakeup is not None:
            self._wakeup()

    def claim(self) -> Task | None:
        with self._lock:
            self._promote_due(time.monotonic())
            return self._ready.popleft() if self._ready else None

    def next_ready_at(self) -> float | None:
        with self._lock:
            return self._delayed[0][0] if self._delayed else None

    def retry(self, task: Task, delay: float) -> None:
        with self._lock:
            if delay <= 0:
                self._ready.appendleft(task)
            else:
                heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), task))

    def finish(self, record: PORecord) -> None:
        """Nothing to persist: the pool keeps the records."""

    def drain(self) -> list[Task]:
        with self._lock:
            tasks = list(self._ready) + [t for _, _, t in sorted(self._delayed)]
            self._ready.clear()
            self._delayed.clear()
            return tasks

    def pending(self) -> int:
        with self._lock:
            return len(self._ready) + len(self._delayed)

    def _promote_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            self._ready.append(heapq.heappop(self._delayed)[2])


def tasks_from_po_list(po_list: Any, *, batch: str = "default", site: SitePreset | None = None,
                       first_key: int = 0) -> list[Task]:
    """Validate every PO dict and turn it into a Task; ValueError names index and field."""
    if not isinstance(po_list, list | tuple):
        raise ValueError("po_list must be a list of PO dicts")
    if not po_list:
        raise ValueError("po_list is empty")
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for index, po in enumerate(po_list):
        task = _task_from_po(po, index, batch, site, str(first_key + index))
        if task.po_number in seen:
            raise ValueError(f"po_list[{index}].po_number: duplicate of po_list"
                             f"[{seen[task.po_number]}] ({task.po_number!r})")
        seen[task.po_number] = index
        tasks.append(task)
    return tasks


def _task_from_po(po: Any, index: int, batch: str, site: SitePreset | None, key: str) -> Task:
    where = f"po_list[{index}]"
    if not isinstance(po, dict):
        raise ValueError(f"{where}: expected a dict, got {type(po).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in po or po[name] is None:
            raise ValueError(f"{where}.{name}: missing")
    po_number = _text(po["po_number"], f"{where}.po_number")
    supplier = _text(po["supplier"], f"{where}.supplier")
    url = _text(po["url"], f"{where}.url")
    problem = site.check_url(url) if site is not None else _url_problem(url)
    if problem:
        raise ValueError(f"{where}.url: {problem}")
    amount = _amount(po["amount"], f"{where}.amount")
    extra = tuple((str(k), str(v)) for k, v in po.items() if k not in REQUIRED_FIELDS)
    return Task(key=key, po_number=po_number, supplier=supplier, url=url, amount=amount,
                batch=batch, extra=extra)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: expected a non-empty string, got {value!r}")
    if len(value) > 2000 or any(ord(c) < 32 for c in value):
        raise ValueError(f"{where}: too long or contains control characters")
    return value.strip()


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'} is not allowed (http/https only)"
    if not parts.hostname:
        return "URL has no host"
    return None


def _amount(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    try:
        amount = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    return amount
