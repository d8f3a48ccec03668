"""The engine's exceptions: one small hierarchy, each with the case it covers."""

from __future__ import annotations


class PoolError(Exception):
    """Base class of every error pool_core raises on purpose."""


class BrowserNotFoundError(PoolError):
    """No Chromium executable could be found or the configured one is unusable."""


class ProfileCreationError(PoolError):
    """A worker's temporary profile could not be created (disk, permissions, base profile)."""


class WorkerStartupError(PoolError):
    """A worker process or its browser failed to become ready."""


class TaskTimeoutError(PoolError):
    """A task ran past max_task_timeout; its worker was killed."""


class UnsafePathError(PoolError):
    """A path built from untrusted names would land outside the output root."""


class UnsafeURLError(PoolError, ValueError):
    """A target URL is refused: scheme other than http/https, or a host off the allow-list."""


def says_target_closed(exc: BaseException) -> bool:
    """Whether a Playwright error says its page, context or browser went away.

    Playwright fails a call with this as soon as its page closes, and a browser that
    dies closes every page: such an error may be the first sign of a lost browser.
    """
    text = str(exc)
    return "has been closed" in text or "Browser closed" in text or "Connection closed" in text
