"""A malformed setting stops start-up with a message naming the variable and its value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("POOL_POLL_SECONDS", "1,5", "POOL_POLL_SECONDS='1,5': expected a number of seconds"),
    ("POOL_NOTIFY_TIMEOUT", "-3", "POOL_NOTIFY_TIMEOUT='-3': expected a number of seconds"),
    ("POOL_SIZE", "four", "POOL_SIZE='four': expected a whole number"),
])
def test_a_malformed_setting_names_itself(name: str, value: str, expected: str) -> None:
    env = {**os.environ, name: value, "DJANGO_SETTINGS_MODULE": "poolsite.settings"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert expected in done.stderr, done.stderr[-2000:]
