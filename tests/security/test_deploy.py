"""Production settings are safe: `check --deploy` passes, the dev secret key is refused."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    base.update(POOL_DATA_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_it_passes_the_deployment_checklist_with_production_settings(tmp_path: Path) -> None:
    done = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING",
                   DJANGO_DEBUG="0", DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
                   DJANGO_ALLOWED_HOSTS="pool.example.com")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_it_refuses_to_start_in_production_with_the_development_secret_key(
        tmp_path: Path) -> None:
    done = _manage(tmp_path, "check", DJANGO_DEBUG="0",
                   DJANGO_ALLOWED_HOSTS="pool.example.com")
    assert done.returncode != 0
    assert "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0" in done.stderr


def test_it_refuses_a_malformed_setting_by_name(tmp_path: Path) -> None:
    done = _manage(tmp_path, "check", DJANGO_DEBUG="maybe")
    assert done.returncode != 0
    assert "DJANGO_DEBUG='maybe'" in done.stderr
