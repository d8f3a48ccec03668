"""Run one system as a child process and measure it from outside.

    harness ──Popen──▶ runner (python -m bench.alternatives.X)
       │                 └─▶ Playwright driver(s) ─▶ Chromium tree(s)
       └─ every 0.5 s: PSS of the child's whole tree (psutil, incl. browsers and drivers);
          optionally SIGKILL one browser once the site has served `kill_after` PO pages.

Memory is PSS, not RSS: Chromium's processes share most of their pages.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_SECONDS = 0.5
# A process of the run may still be exiting when the runner has exited (a fork server
# reading its parent's EOF, a driver seeing its pipe close): it is "left behind" only if
# it still runs this long afterwards.
STRAY_GRACE_SECONDS = 2.0
MB = 1024 * 1024
BROWSER_NAMES = ("chrom", "headless_shell")


@dataclass
class ChildRun:
    """What the harness saw of one child run (times in seconds, memory in bytes)."""

    wall_seconds: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    pss_samples: list[int] = field(default_factory=list)
    browsers_seen: set[int] = field(default_factory=set)
    killed_browser: int | None = None
    killed_at_seconds: float | None = None
    browsers_after_kill: set[int] = field(default_factory=set)
    strays_killed: int = 0
    strays: list[str] = field(default_factory=list)  # what was killed: "pid name cmdline"
    late_exits: list[str] = field(default_factory=list)  # still running at exit, gone in grace

    @property
    def pss_peak(self) -> int:
        return max(self.pss_samples, default=0)

    @property
    def pss_median(self) -> int:
        return int(statistics.median(self.pss_samples)) if self.pss_samples else 0


def is_browser_main(proc: psutil.Process) -> bool:
    """True for a Chromium browser process (not a renderer, GPU or zygote helper)."""
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return False
    # By argv[0], not the process name: Debian's /usr/bin/chromium-headless-shell is a
    # /bin/sh wrapper whose process is also named "chromium-headle…".
    program = os.path.basename(cmdline[0]).lower() if cmdline else ""
    return any(n in program for n in BROWSER_NAMES) and not any(
        arg.startswith("--type=") for arg in cmdline)


def busiest_browser(procs: list[psutil.Process]) -> int:
    """The browser with the most renderers (open pages); lowest pid on a tie."""
    renderers: dict[int, int] = {}
    for proc in procs:
        if is_browser_main(proc):
            renderers.setdefault(proc.pid, 0)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if "--type=renderer" in proc.cmdline():
                for parent in proc.parents():
                    if parent.pid in renderers:
                        renderers[parent.pid] += 1
    return min(renderers, key=lambda pid: (-renderers[pid], pid))


def tree_of(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_pss(procs: list[psutil.Process]) -> int:
    """Sum the PSS of every process in the list that still exists."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # it may exit between listing and reading
            total += proc.memory_full_info().pss
    return total


def child_run(cmd: list[str], *, cwd: Path, log: Path, timeout: float,
              kill_when: Callable[[], bool] | None = None) -> ChildRun:
    """Run `cmd`, sampling its tree's PSS; SIGKILL one browser once `kill_when()` is true."""
    run = ChildRun()
    seen: dict[int, psutil.Process] = {}
    started = time.monotonic()
    with log.open("wb") as log_file:
        popen = subprocess.Popen(cmd, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT)
        root = psutil.Process(popen.pid)
        while popen.poll() is None:
            procs = tree_of(root)
            seen.update((p.pid, p) for p in procs)
            run.pss_samples.append(tree_pss(procs))
            browsers = {p.pid for p in procs if is_browser_main(p)}
            if run.killed_browser is not None:
                run.browsers_after_kill |= browsers - run.browsers_seen
            elif kill_when is not None and browsers and kill_when():
                run.killed_browser = busiest_browser(procs)
                run.killed_at_seconds = time.monotonic() - started
                os.kill(run.killed_browser, signal.SIGKILL)
            run.browsers_seen |= browsers
            if time.monotonic() - started > timeout:
                run.timed_out = True
                procs_kill(tree_of(root))
            time.sleep(SAMPLE_SECONDS)
        run.wall_seconds = time.monotonic() - started
        run.exit_code = popen.returncode
    at_exit = [p for p in seen.values() if _running(p)]
    described = {p.pid: _describe(p) for p in at_exit}
    deadline = time.monotonic() + STRAY_GRACE_SECONDS
    while (alive := [p for p in at_exit if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    run.strays = [described[p.pid] for p in alive]
    run.late_exits = [described[p.pid] for p in at_exit if p not in alive]
    run.strays_killed = procs_kill(alive)
    return run


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} {proc.name()} {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"{proc.pid} (gone)"


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def procs_kill(procs: list[psutil.Process]) -> int:
    """SIGKILL the listed processes that still run (psutil checks pid reuse); count them."""
    killed = 0
    for proc in procs:
        if _running(proc):
            with contextlib.suppress(psutil.Error):
                proc.kill()
                killed += 1
    return killed
