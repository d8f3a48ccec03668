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
