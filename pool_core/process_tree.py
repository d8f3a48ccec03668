"""Find, measure and kill a worker's process tree: Python, Playwright driver, Chromium.

Playwright starts Chromium detached (its own process group), so killing the worker's
group leaves the browser running. A worker's tree is therefore found three ways:
descendants of the worker, the pids the worker recorded in its temp root
(`pids.json`, with their start times against pid reuse), and any process whose command
line names the temp root (Chromium's --user-data-dir, crashpad's --database).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable

import psutil

log = logging.getLogger(__name__)
PIDS_FILE = "pids.json"
WORKER_NAME_PREFIX = "pool-worker-"  # a worker's process name: pool-worker-<slot>


def name_process(name: str) -> None:
    """Name this process as ps, top and psutil show it (Linux; 15 characters)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w", encoding="ascii") as comm:
        comm.write(name[:15])


def worker_processes(host_pid: int) -> list[psutil.Process]:
    """The worker processes a host has started (they descend from its fork server)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(host_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if proc.name().startswith(WORKER_NAME_PREFIX):
                    found.append(proc)
    return found


def is_browser_main(proc: psutil.Process) -> bool:
    """Whether a process is a Chromium browser proper: no --type= (renderer, GPU, zygote),
    and named by its argv[0], not the name Debian's /bin/sh wrapper also carries."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    program = os.path.basename(cmdline[0]).lower() if cmdline else ""
    return ("chrom" in program or "headless_shell" in program) and not any(
        arg.startswith("--type=") for arg in cmdline)


def record_pids(root: str, pids: Iterable[int]) -> None:
    """Write the processes of this worker's tree into its root (atomically), marking
    those that lead a session of their own (the browser: see session_members)."""
    entries = []
    for pid in pids:
        try:
            entries.append({"pid": pid, "create_time": psutil.Process(pid).create_time(),
                            "session_leader": pid != os.getpid() and os.getsid(pid) == pid})
        except (psutil.Error, OSError):
            continue
    path = os.path.join(root, PIDS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(entries, fh)
    os.replace(path + ".tmp", path)


def _recorded_entries(root: str) -> list[dict]:
    """The entries record_pids wrote into `root` ([] when there are none yet)."""
    try:
        with open(os.path.join(root, PIDS_FILE), encoding="utf-8") as fh:
            entries = json.load(fh)
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def recorded_processes(root: str) -> list[psutil.Process]:
    """Return the still-living processes a worker recorded in `root`."""
    found = []
    for entry in _recorded_entries(root):
        try:
            proc = psutil.Process(int(entry["pid"]))
            if abs(proc.create_time() - float(entry["create_time"])) < 0.5:
                found.append(proc)
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    return found


def session_members(root: str) -> list[psutil.Process]:
    """Return the living processes of the sessions a worker's browser leads.

    Playwright starts Chromium in a session of its own, and every process Chromium
    starts stays in it. A renderer whose browser was killed is reparented to init and
    names no temp root, and without a zygote (lean mode) no recorded process is its
    parent any more: its session is what still ties it to the worker. A member must
    have started after the recorded leader, so a reused session id cannot match.
    """
    try:
        leaders = {int(e["pid"]): float(e["create_time"]) for e in _recorded_entries(root)
                   if e.get("session_leader")}
    except (KeyError, TypeError, ValueError):
        return []
    if not leaders:
        return []
    found = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            sid = os.getsid(proc.pid)
        except OSError:
            continue
        if sid in leaders and (proc.info["create_time"] or 0) >= leaders[sid] - 0.5:
            found.append(proc)
    return found


def processes_naming(path: str) -> list[psutil.Process]:
    """Return processes whose command line mentions `path` (a temp root)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or ()
        if any(path in part for part in cmdline):
            found.append(proc)
    return found


def worker_tree(pid: int | None, root: str | None) -> set[psutil.Process]:
    """Return every process belonging to a worker (alive at the time of the call)."""
    procs: set[psutil.Process] = set()
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            procs.add(psutil.Process(pid))
    if root:
        procs.update(recorded_processes(root))
        procs.update(session_members(root))
        procs.update(processes_naming(root))
    for proc in list(procs):
        try:
            procs.update(proc.children(recursive=True))
        except psutil.Error:
            continue
    procs.discard(psutil.Process())  # never ourselves
    return procs


def kill_tree(pid: int | None, root: str | None, timeout: float = 3.0) -> int:
    """SIGKILL a worker's whole tree and wait for it; return how many were killed."""
    procs = worker_tree(pid, root)
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            continue
    for proc in wait_gone(procs, timeout):
        log.warning("process %s survived SIGKILL for %.1fs", proc.pid, timeout)
    return len(procs)


def is_gone(proc: psutil.Process) -> bool:
    """Whether a process has exited; a zombie counts as gone."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still alive after `timeout`.

    Orphaned browser processes are reparented to PID 1, which may reap them late; a
    zombie holds no memory and no files, so it does not hold us up
    (psutil.wait_procs would wait for the reaping).
    """
    pending = list(procs)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        pending = [p for p in pending if not is_gone(p)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def tree_pss_mb(pid: int) -> float:
    """Return the PSS of a process and all its descendants, in MB (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total / (1024 * 1024)


def trees_pss_mb(pids: Iterable[int]) -> dict[int, float]:
    """PSS in MB of several process trees at once (0 for a tree that is gone).

    One pass over the process table for all trees: `children(recursive=True)` scans
    every process on the machine per call, which made memory sampling of 8 workers the
    dispatcher's main CPU cost.
    """
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    totals: dict[int, float] = {}
    for root in pids:
        total, stack = 0, [root]
        while stack:
            pid = stack.pop()
            stack.extend(children.get(pid, ()))
            total += _pss_bytes(pid)
        totals[root] = total / (1024 * 1024)
    return totals


def _pss_bytes(pid: int) -> int:
    """PSS of one process from /proc/<pid>/smaps_rollup (0 if it is gone).

    One read instead of psutil's three (stat, statm, smaps_rollup); the kernel's walk
    of a browser's mappings is the cost that remains.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
        return 0
    except OSError:  # no smaps_rollup (not Linux 4.14+): ask psutil
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(pid).memory_full_info().pss)
    return 0
