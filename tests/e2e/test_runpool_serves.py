"""What `make run` starts: runpool serving the web app and the demo site, demo data loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.runpool_harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def _status(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def fresh_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(POOL_DATA_DIR=str(tmp_path / "data"), POOL_DEMO_PORT=str(free_port()))
    return env


def test_it_loads_demo_data_idempotently_and_prints_the_password(
        fresh_env: dict[str, str]) -> None:
    assert _manage(fresh_env, "migrate", "--noinput").returncode == 0
    first = _manage(fresh_env, "demo_data", "--no-input")
    second = _manage(fresh_env, "demo_data", "--no-input", "--url", "http://127.0.0.1:8123/")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "Sign in at http://127.0.0.1:8000/ as 'admin' with password" in first.stdout
    assert "Sign in at http://127.0.0.1:8123/ as 'admin'" in second.stdout  # make run PORT=
    assert "sample batch #1: 56 POs" in first.stdout
    assert "sample batch" not in second.stdout  # not created twice
    password = first.stdout.split("with password '")[1].split("'")[0]
    assert f"with password '{password}'" in second.stdout  # same account, not reset
    secret = Path(fresh_env["POOL_DATA_DIR"]) / "demo-admin-password.txt"
    assert secret.stat().st_mode & 0o077 == 0  # owner-only


def test_it_serves_the_app_and_the_demo_site_then_stops_on_sigterm(
        fresh_env: dict[str, str]) -> None:
    assert _manage(fresh_env, "migrate", "--noinput").returncode == 0
    port = free_port()
    demo = f"http://127.0.0.1:{fresh_env['POOL_DEMO_PORT']}"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runpool", "--port", str(port), "--with-demo-site"],
        cwd=ROOT, env=fresh_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _status(f"http://127.0.0.1:{port}/admin/login/") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "runpool did not serve within 30 s"
            time.sleep(0.2)
        assert _status(f"http://127.0.0.1:{port}/") == 302  # login required
        assert _status(f"{demo}/order_headers/100002") == 302  # the demo's login wall
        assert _status(f"{demo}/healthz") == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
