"""Session capture and probe in a spawned child: no Django, no browser left behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pool_core.profiles import ProfileManager
from pool_core.session_check import (
    CaptureRequest,
    ProbeRequest,
    capture_session,
    probe_session,
    run_isolated,
)
from pool_core.sites import load_preset
from poolsite.demo_erp.server import DemoSite


def test_it_imports_without_django() -> None:
    code = ("import sys, pool_core.session_check; "
            "assert 'django' not in sys.modules, 'django imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_it_captures_then_probes_signed_in_signed_out_and_down(
        site: DemoSite, browser_path: str, tmp_path: Path) -> None:
    preset = load_preset("demo").with_base_url(site.base_url)
    target = tmp_path / "state.json"
    captured = run_isolated(capture_session, CaptureRequest(
        site=preset, base_url=site.base_url, browser_path=browser_path,
        start_url=site.signin_url(), target=str(target), wait_s=20), timeout_s=90)
    assert (captured.ok, captured.cookie_count, captured.hosts) == (True, 1, ("127.0.0.1",))
    assert target.stat().st_mode & 0o777 == 0o600
    value = json.loads(target.read_text())["cookies"][0]["value"]
    assert value not in repr(captured)

    def probe() -> tuple[bool | None, str]:
        result = run_isolated(probe_session, ProbeRequest(
            site=preset, base_url=site.base_url, browser_path=browser_path,
            storage_state=str(target), nav_timeout_s=10), timeout_s=60)
        return result.signed_in, result.message

    try:
        assert probe() == (True, "signed in")
        site.down = True
        assert probe() == (None, f"the probe page {site.base_url}/order_headers answered "
                                 "HTTP 503")
        site.down = False
        site.expire_sessions()
        # Coupa sends an expired session to its identity host, off the allow-list.
        assert probe() == (False, f"the probe page {site.base_url}/order_headers sent the "
                                  "browser to 127.0.0.5 (a sign-in page off the allow-list)")
    finally:
        site.down = False
    assert not [p for p in psutil.Process().children(recursive=True)
                if "chrom" in p.name() or "headless" in p.name()]


def test_enter_pressed_before_signing_in_saves_nothing(
        site: DemoSite, browser_path: str, tmp_path: Path) -> None:
    preset = load_preset("demo").with_base_url(site.base_url)
    pressed = multiprocessing.get_context("spawn").Event()
    pressed.set()  # the operator pressed Enter while the browser still shows the login form
    target = tmp_path / "state.json"
    result = run_isolated(capture_session, CaptureRequest(
        site=preset, base_url=site.base_url, browser_path=browser_path,
        start_url=f"{site.base_url}/sessions/new", target=str(target), wait_s=20),
        stop=pressed, timeout_s=90)
    assert not result.ok and "sign-in page" in result.message  # the identity host
    assert not target.exists()


def test_a_dead_captures_temp_folder_is_swept_with_its_browser(tmp_path: Path) -> None:
    """What a capture killed with SIGKILL leaves goes at the next sweep (runpool start)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"poolsite-session-{dead.pid}-k1ll3d"
    living = tmp_path / f"poolsite-session-{os.getpid()}-ru4nng"
    unowned_old = tmp_path / "poolsite-session-0ld5tyle"  # made before folders had owners
    unowned_new = tmp_path / "poolsite-session-n3wst4rt"
    for root, owner in ((stale, {"pid": dead.pid, "create_time": 1.0}),
                        (living, {"pid": os.getpid(),
                                  "create_time": psutil.Process().create_time()}),
                        (unowned_old, None), (unowned_new, None)):
        (root / "tmp").mkdir(parents=True)
        if owner is not None:
            (root / "owner.json").write_text(json.dumps(owner))
    a_day_ago = time.time() - 25 * 3600
    os.utime(unowned_old, (a_day_ago, a_day_ago))
    # A stand-in for the capture's browser: its command line names the folder.
    sleeper = "import time; time.sleep(60)"
    orphan = subprocess.Popen([sys.executable, "-c", sleeper, str(stale / "tmp")])
    try:
        report = ProfileManager(temp_dir=str(tmp_path)).sweep_stale()
        assert orphan.wait(5) == -signal.SIGKILL
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([living.name,
                                                                 unowned_new.name])
    assert report.roots_removed == 2 and report.processes_killed >= 1

