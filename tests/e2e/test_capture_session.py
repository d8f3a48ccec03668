"""`manage.py capture_session` as an operator runs it: what it prints while it waits,
when it gives up, and that it leaves no temp folder (nor browser) on any way out.

Real Chromium against the demo site; the command in a subprocess with its own TMPDIR.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from pool_core.process_tree import is_gone, kill_tree, processes_naming, wait_gone
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import ROOT, Deployment, deployment

pytestmark = pytest.mark.timeout(120)


def _capture(deploy: Deployment, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "manage.py", "capture_session", "--site", "demo",
                             "--headless", *args], cwd=ROOT, env=deploy.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _end(proc: subprocess.Popen[str], deploy: Deployment,
         family: Sequence[psutil.Process] = ()) -> None:
    """Kill what a test left running: the command, its child, the child's browser."""
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.kill()
    kill_tree(proc.pid if proc.poll() is None else None, str(deploy.tmp_dir))
    if proc.poll() is None:
        proc.wait(10)


def _leftovers(deploy: Deployment) -> list[str]:
    found = [f"folder {p.name}" for p in deploy.tmp_dir.glob("poolsite-session-*")]
    return found + [f"process {p.pid}" for p in processes_naming(str(deploy.tmp_dir))
                    if not is_gone(p)]


def _wait_clean(deploy: Deployment, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while (found := _leftovers(deploy)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_probe_answering_404_gives_up_at_once_and_says_so(
        site: DemoSite, tmp_path: Path) -> None:
    deploy = deployment(tmp_path, site)
    # Signed in on the demo site, but the tenant address is wrong: its probe page 404s.
    tenant = f"{site.base_url}/no-such-tenant"
    started = time.monotonic()
    proc = _capture(deploy, "--url", site.signin_url(), "--base-url", tenant, "--wait", "300")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        _end(proc, deploy)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0, out + err
    assert elapsed < 30, f"gave up after {elapsed:.0f} s"
    assert f"the probe page {tenant}/order_headers answered HTTP 404" in err, out + err
    assert "saved" not in out
    assert _wait_clean(deploy) == []


def _progress(proc: subprocess.Popen[str]) -> queue.Queue[tuple[float, str]]:
    """The command's stdout lines as they come, with the time each arrived."""
    lines: queue.Queue[tuple[float, str]] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put((time.monotonic(), line.strip()))

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_it_reports_what_it_sees_and_a_sigterm_leaves_nothing_behind(
        site: DemoSite, tmp_path: Path) -> None:
    deploy = deployment(tmp_path, site)
    deploy.env.pop("PYTHONUNBUFFERED", None)  # the command flushes its lines itself
    # The sign-in form, and nobody to fill it in: the command waits.
    proc = _capture(deploy, "--url", f"{site.base_url}/sessions/new", "--wait", "300")
    lines = _progress(proc)
    seen: list[tuple[float, str]] = []
    try:
        while len(seen) < 2:
            seen.append(lines.get(timeout=30))
        assert list(deploy.tmp_dir.glob("poolsite-session-*"))  # in use while it waits
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    finally:
        _end(proc, deploy)
    text = [line for _, line in seen]
    for line in text:  # the page's host (the identity host's form), signed in or not
        assert "the page is on 127.0.0.5 (HTTP 200), not signed in; probe not tried" in line, text
    assert 3 <= seen[1][0] - seen[0][0] <= 8, seen
    assert proc.returncode != 0
    assert _wait_clean(deploy) == []


def test_a_capture_killed_outright_leaves_nothing_behind(
        site: DemoSite, tmp_path: Path) -> None:
    """SIGKILL runs no clean-up in the command: its child notices and cleans up."""
    deploy = deployment(tmp_path, site)
    proc = _capture(deploy, "--url", f"{site.base_url}/sessions/new", "--wait", "300")
    family: list[psutil.Process] = []
    try:
        _progress(proc).get(timeout=30)  # waiting, browser open
        assert list(deploy.tmp_dir.glob("poolsite-session-*"))
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.kill()
        proc.wait(10)
        assert _wait_clean(deploy, timeout=15) == []
        assert [p.pid for p in wait_gone(family, 10)] == []  # the child, its driver
    finally:
        _end(proc, deploy, family)
