"""pool_core: a pool of worker processes, each driving its own headless Chromium.

No Django here (a test asserts it); poolsite builds the configuration and passes it in.
The processing interface (process_fn, JobEnv) is described in pool_core.config.

Names are imported lazily (PEP 562): a worker process imports pool_core.worker without
paying for the pool's side, which shortens every worker's start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pool_core.browser import find_browser, launch_args
    from pool_core.config import HeadlessConfiguration, JobEnv
    from pool_core.errors import (
        BrowserNotFoundError,
        PoolError,
        ProfileCreationError,
        TaskTimeoutError,
        WorkerStartupError,
    )
    from pool_core.events import EventKind, PORecord
    from pool_core.pool import WorkerPool
    from pool_core.profiles import ProfileManager
    from pool_core.reasons import Pause, PauseReason, Reason
    from pool_core.state import PoolStatus
    from pool_core.task_source import InMemoryTaskSource, TaskSource

_HOMES = {
    "find_browser": "browser", "launch_args": "browser",
    "HeadlessConfiguration": "config", "JobEnv": "config",
    "BrowserNotFoundError": "errors", "PoolError": "errors",
    "ProfileCreationError": "errors", "TaskTimeoutError": "errors",
    "WorkerStartupError": "errors",
    "EventKind": "events", "PORecord": "events",
    "WorkerPool": "pool", "ProfileManager": "profiles", "PoolStatus": "state",
    "Pause": "reasons", "PauseReason": "reasons", "Reason": "reasons",
    "InMemoryTaskSource": "task_source", "TaskSource": "task_source",
}

__all__ = [
    "BrowserNotFoundError",
    "EventKind",
    "HeadlessConfiguration",
    "InMemoryTaskSource",
    "JobEnv",
    "PORecord",
    "Pause",
    "PauseReason",
    "PoolError",
    "PoolStatus",
    "ProfileCreationError",
    "ProfileManager",
    "Reason",
    "TaskSource",
    "TaskTimeoutError",
    "WorkerPool",
    "WorkerStartupError",
    "find_browser",
    "launch_args",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pool_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pool_core.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
