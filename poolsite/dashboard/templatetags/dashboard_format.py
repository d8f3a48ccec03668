"""Formatting for the server-rendered snapshot; dashboard.js formats the same way."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django import template

register = template.Library()
MILLISECONDS_FROM = 1e11  # an epoch this large is in milliseconds (year 5138 in seconds)


@register.filter
def duration(seconds: Any) -> str:
    """1:05:09, 5:09 or 9s; empty for nothing."""
    if not isinstance(seconds, int | float) or seconds < 0:
        return ""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    if minutes:
        return f"{minutes}:{secs:02d}"
    return f"{secs}s"


@register.filter
def since(epoch_seconds: Any) -> str:
    """How long ago an epoch-seconds moment was, as a duration."""
    if not isinstance(epoch_seconds, int | float):
        return ""
    return duration(max(0.0, time.time() - epoch_seconds))


@register.filter
def clock(epoch_seconds: Any) -> str:
    """HH:MM:SS (UTC) of an epoch moment in seconds (or milliseconds, for sent_at)."""
    if not isinstance(epoch_seconds, int | float):
        return ""
    if epoch_seconds > MILLISECONDS_FROM:
        epoch_seconds /= 1000
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%H:%M:%S")


@register.filter
def sorted_cards(workers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker cards by host, then worker id in natural order (w2 before w10)."""
    return [dict(card, key=key) for key, card in sorted(workers.items(), key=_card_order)]


def _card_order(item: tuple[str, dict[str, Any]]) -> tuple[str, int, str]:
    card = item[1]
    worker = str(card.get("worker_id", ""))
    return (str(card.get("host", "")), len(worker), worker)


@register.filter
def percent_of(part: Any, whole: Any) -> int:
    """Whole percent of part in whole, clipped to 0-100."""
    try:
        return max(0, min(100, round(100 * float(part) / float(whole))))
    except (TypeError, ValueError, ZeroDivisionError):
        return 0


@register.filter
def get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None
