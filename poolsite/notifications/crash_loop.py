"""A crash loop: a host's workers restart again and again.

The engine replaces a worker that crashed (restarting its slot, WorkerStarted.restarts)
with no limit while some workers run; only when workers keep failing *to start* does it
give up (ERROR, "workers keep failing to start"), which the host turns into a pause.
Both are a crash loop for operators: the first seen here, from the restart counts of the
pool's workers (POOL_CRASH_LOOP_RESTARTS within POOL_CRASH_LOOP_SECONDS), once per run.
"""

from __future__ import annotations

import time
from collections import deque

from django.conf import settings

ENGINE_CRASH_LOOP = "workers keep failing to start"  # pool_core.supervisor's fatal reason
CHECK_EVERY = 2.0  # seconds between looks at the pool's restart counts


class CrashLoopWatch:
    """Counts worker restarts of the current run; says once when they loop."""

    def __init__(self, restarts: int | None = None, seconds: float | None = None) -> None:
        self.limit = restarts if restarts is not None else settings.POOL_CRASH_LOOP_RESTARTS
        self.window = seconds if seconds is not None else settings.POOL_CRASH_LOOP_SECONDS
        self._run_id: int | None = None
        self._last_total = 0
        self._restarts: deque[float] = deque()
        self._told = False
        self._next_check = 0.0

    @staticmethod
    def is_crash_loop(reason: str) -> bool:
        return ENGINE_CRASH_LOOP in reason

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_EVERY
        return True

    def observe(self, run_id: int, total_restarts: int, now: float | None = None) -> str:
        """Note the run's restart count; the text to notify with, once, when it loops."""
        now = time.monotonic() if now is None else now
        if run_id != self._run_id:
            self._run_id, self._last_total, self._told = run_id, 0, False
            self._restarts.clear()
        new = max(0, total_restarts - self._last_total)
        self._last_total = max(self._last_total, total_restarts)
        self._restarts.extend([now] * new)
        while self._restarts and now - self._restarts[0] > self.window:
            self._restarts.popleft()
        if self._told or self.limit <= 0 or len(self._restarts) < self.limit:
            return ""
        self._told = True
        return (f"{len(self._restarts)} worker restarts within {self.window:g} s "
                f"({total_restarts} in this run)")
