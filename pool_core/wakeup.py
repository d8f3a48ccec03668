"""A self-pipe: wakes a thread that waits in multiprocessing.connection.wait().

The dispatcher waits on its workers' pipes and process sentinels together; anything
else that needs its attention (a public call of the pool, new work in the task source,
a memory reading) writes a byte here, and the read end is one more thing it waits on.
"""

from __future__ import annotations

import contextlib
import os
import threading


class WakeUpPipe:
    """wake() from any thread; the owner waits on `fileno`, drain()s, then close()s."""

    def __init__(self) -> None:
        self.fileno, self._write_end = os.pipe()
        self._lock = threading.Lock()
        self._closed = False
        os.set_blocking(self.fileno, False)
        os.set_blocking(self._write_end, False)

    def wake(self) -> None:
        # Never write after close(): the fd number may be reused.
        with self._lock, contextlib.suppress(OSError):  # OSError: pipe full, awake anyway
            if not self._closed:
                os.write(self._write_end, b"x")

    def drain(self) -> None:
        """Read every wake-up so far (they all mean "look again")."""
        try:
            while os.read(self.fileno, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in (self.fileno, self._write_end):
                os.close(fd)
