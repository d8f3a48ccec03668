"""pool_core: a pool of worker processes, each driving its own headless Chromium.

No Django here (a test asserts it); poolsite builds the configuration and passes it in.
"""

from pool_core.browser import find_browser, launch_args
from pool_core.errors import (
    BrowserNotFoundError,
    PoolError,
    ProfileCreationError,
    TaskTimeoutError,
    WorkerStartupError,
)

__all__ = [
    "BrowserNotFoundError",
    "PoolError",
    "ProfileCreationError",
    "TaskTimeoutError",
    "WorkerStartupError",
    "find_browser",
    "launch_args",
]
