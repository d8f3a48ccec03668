"""The dispatcher's view of one worker process, and what a worker's end means."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from pool_core.errors import TaskTimeoutError
from pool_core.messages import EXIT_BROWSER_DIED, POStatus, Task, TaskResult
from pool_core.profiles import WorkerRoot
from pool_core.reasons import Reason


@dataclass(eq=False)
class WorkerHandle:
    """The dispatcher's view of one worker process (the pool's lock guards it)."""

    slot: int
    process: BaseProcess
    conn: Connection
    root: WorkerRoot
    spawned_at: float
    restarts: int
    state: str = "starting"  # starting | idle | busy
    started_wall: float | None = None
    idle_since: float = 0.0
    task: Task | None = None
    task_sent: float = 0.0
    available_at: float = 0.0
    phase: str = ""
    tasks_done: int = 0
    memory_mb: float = 0.0
    leaving: str = ""  # "" | scale_down | recycle | stop
    stop_sent: bool = False
    kill_reason: str = ""
    startup_error: str = ""

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, message: Task | None) -> None:
        # If it died, its sentinel tells us and its task is retried.
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(message)


# Kills that end a worker abnormally (WorkerStopped.crashed); the others (a pool error,
# a start-up that took too long) are the engine tidying up.
CRASH_KILLS = (Reason.TASK_TIMEOUT, Reason.MEMORY_LIMIT, Reason.STOP_TIMEOUT)


def exit_reason(handle: WorkerHandle, exitcode: int | None) -> tuple[str, bool]:
    """Why a worker ended, and whether it crashed. Leaving (stop, recycle, scale-down)
    only explains a clean exit: a worker killed from outside on its way out crashed."""
    if handle.kill_reason:
        return handle.kill_reason, handle.kill_reason in CRASH_KILLS
    if exitcode == EXIT_BROWSER_DIED:
        return Reason.BROWSER_CRASH, True
    if exitcode != 0 or not handle.leaving:
        return f"crashed (exit code {exitcode})", True
    return ("stopped" if handle.leaving == "stop" else handle.leaving), False


def lost_task_result(handle: WorkerHandle, exitcode: int | None) -> TaskResult:
    task = handle.task
    assert task is not None
    reason = handle.kill_reason
    if reason == Reason.TASK_TIMEOUT:
        return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.TIMEOUT,
                          reason=Reason.TASK_TIMEOUT,
                          message=f"{TaskTimeoutError.__name__}: the PO ran past "
                          "max_task_timeout; its worker's process tree was killed")
    if reason == Reason.STOP_TIMEOUT:
        return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.CANCELLED,
                          reason=Reason.STOP_TIMEOUT,
                          message="the pool stopped while this PO ran")
    if reason == Reason.MEMORY_LIMIT:
        return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.FAILED,
                          reason=Reason.MEMORY_LIMIT, retryable=True,
                          message=f"the worker used {handle.memory_mb:.0f} MB; killed")
    return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.FAILED,
                      reason=Reason.WORKER_CRASHED, retryable=True,
                      message=f"the worker died (exit code {exitcode}) during this PO")


def receive_all(conn: Connection) -> list[Any]:
    messages = []
    try:
        while conn.poll():
            messages.append(conn.recv())
    except (EOFError, OSError):
        pass
    return messages
