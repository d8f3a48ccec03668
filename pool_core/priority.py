"""OS priority of a worker's browser: niceness, autogroups, and no way back up.

A worker's Playwright driver and Chromium do the bulk work; the host, the dispatcher and
the worker processes coordinate and should answer first. Throughput is unchanged (the
browsers share the CPU among themselves as before); hand-offs between POs wait less
behind rendering. worker_main calls forbid_raising_priority() before it starts the
driver, and the browser session calls lower_priority() on every process it launched
(WorkerPool's browser_nice). Linux only; elsewhere (or without /proc) both do what they
can and never fail a worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys

import psutil

PR_CAPBSET_DROP, CAP_SYS_NICE = 24, 23  # <linux/prctl.h>, <linux/capability.h>
log = logging.getLogger(__name__)


def check_niceness(niceness: object) -> int:
    """A browser_nice value (0-19), or ValueError."""
    if isinstance(niceness, bool) or not isinstance(niceness, int) or not (
            0 <= niceness <= 19):
        raise ValueError(f"browser_nice must be an int from 0 to 19, got {niceness!r}")
    return niceness


def lower_priority(processes: list[psutil.Process], niceness: int) -> None:
    """Renice the driver and browser, thread by thread (Linux niceness is per thread).

    Zygotes included, so the renderers they fork later inherit it, and without a zygote
    the browser's renderers inherit it from the browser. Raising niceness needs no
    privilege; Chromium cannot lower it again (forbid_raising_priority).

    Playwright starts Chromium in a session of its own, and with the kernel's autogroup
    scheduling (sched_autogroup_enabled, the default on desktop and many servers) each
    session is a group that gets an equal CPU share however nice its threads are: eight
    browsers would leave the host, the workers and the drivers one ninth of the CPU.
    So the browser's autogroup gets the same niceness.
    """
    if niceness <= 0:
        return
    ours = _autogroup(os.getpid())
    groups_done: set[str] = set()
    for proc in processes:
        with contextlib.suppress(psutil.Error, OSError):
            for thread in proc.threads():
                with contextlib.suppress(OSError):
                    if os.getpriority(os.PRIO_PROCESS, thread.id) < niceness:
                        os.setpriority(os.PRIO_PROCESS, thread.id, niceness)
        group = _autogroup(proc.pid)
        if group and group != ours and group not in groups_done:
            groups_done.add(group)
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/autogroup", "w") as fh:
                fh.write(str(niceness))


def _autogroup(pid: int) -> str:
    """The autogroup of a process ("/autogroup-85"), or "" without autogroups."""
    try:
        with open(f"/proc/{pid}/autogroup", encoding="ascii") as fh:
            return fh.read().split()[0]
    except (OSError, IndexError):
        return ""


def forbid_raising_priority() -> None:
    """Keep the driver and Chromium from undoing lower_priority.

    As root, Chromium raises threads it deems urgent to nice -8: compositor and IO
    threads, and without a zygote (lean mode) each renderer's main thread, the one that
    runs the page. They would then outrank the dispatcher and the workers. Dropping
    CAP_SYS_NICE from this process's bounding set leaves the programs it starts (the
    driver, the browser) without it, so their attempts fail (EPERM) and they run at the
    worker's niceness. This process keeps its own capabilities. Linux only; where the
    call is not allowed (no CAP_SETPCAP) Chromium's threads stay as it sets them.
    """
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return  # without root, RLIMIT_NICE (0 by default) already forbids raising
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
        log.debug("could not drop CAP_SYS_NICE: errno %s", ctypes.get_errno())
