"""The daily summary: once a day at POOL_DAILY_SUMMARY_HOUR (UTC), sent by one host.

Every host asks once a minute whether it is time; the event's key holds the date, so
of several hosts (or a host restarted that day) one sends it, once.
"""

from __future__ import annotations

import time
from datetime import date

from django.conf import settings
from django.utils import timezone

CHECK_EVERY = 60.0  # seconds


class DailySummaryClock:
    def __init__(self) -> None:
        self._next_check = 0.0
        self._asked: date | None = None

    def due(self, now: float | None = None) -> date | None:
        """Today's date the first time this host finds the summary hour has come."""
        hour = settings.POOL_DAILY_SUMMARY_HOUR
        clock = time.monotonic() if now is None else now
        if hour is None or clock < self._next_check:
            return None
        self._next_check = clock + CHECK_EVERY
        today = timezone.now()
        if today.hour < hour or self._asked == today.date():
            return None
        self._asked = today.date()
        return today.date()
