"""pool_core: a pool of worker processes, each driving its own headless Chromium.

No Django here (a test asserts it); poolsite builds the configuration and passes it in.
The processing interface (process_fn, JobEnv) is described in pool_core.config.
"""

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
from pool_core.state import PoolStatus
from pool_core.task_source import InMemoryTaskSource, TaskSource

__all__ = [
    "BrowserNotFoundError",
    "EventKind",
    "HeadlessConfiguration",
    "InMemoryTaskSource",
    "JobEnv",
    "PORecord",
    "PoolError",
    "PoolStatus",
    "ProfileCreationError",
    "ProfileManager",
    "TaskSource",
    "TaskTimeoutError",
    "WorkerPool",
    "WorkerStartupError",
    "find_browser",
    "launch_args",
]
