"""Session capture and probe in a spawned child: no Django, no browser left behind."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import psutil

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
