"""Several `runpool` hosts on PostgreSQL notify an event once (scale-out).

Each host is a process of its own with its own database connection; all of them report
the same event at the same moment, as hosts do when they all see a batch finish. (In
the runs so far, three of the four got past the look for the key and raced into the
insert; the unique key turned them away, "already claimed by another host".)
Skipped without POOL_TEST_DATABASE_URL, like the other scale-out tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import fresh_postgres_database, service_url
from tests.poolsite.notify_receivers import http_receiver, wait_until

pytestmark = [pytest.mark.scaleout, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
HOSTS = 4

SETUP = """
import django; django.setup()
from poolsite.notifications.models import NotificationTarget
NotificationTarget.objects.create(name="hook", kind="apprise", address={url!r},
                                  events=["batch_finished"])
"""
REPORT = """
import time, django; django.setup()
from poolsite.notifications.messages import Message
from poolsite.notifications.sender import Notifier
notifier = Notifier("host{i}:1")
while time.time() < {at}:
    time.sleep(0.001)
notifier._notify("batch_finished:1:v5",
                 lambda: Message("batch_finished", "batch done", "5 of 5 completed"))
"""


def test_hosts_on_postgresql_notify_an_event_once(tmp_path: Path) -> None:
    server = service_url("POOL_TEST_DATABASE_URL")
    with fresh_postgres_database(server) as url, http_receiver() as receiver:
        env = {**os.environ, "DATABASE_URL": url, "POOL_DATA_DIR": str(tmp_path),
               "DJANGO_SETTINGS_MODULE": "poolsite.settings"}
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT,
                       env=env, check=True, timeout=120)
        subprocess.run([sys.executable, "-c", SETUP.format(url=receiver.url)], cwd=ROOT,
                       env=env, check=True, timeout=60)
        at = time.time() + 4  # every host reports at this moment
        hosts = [subprocess.Popen([sys.executable, "-c", REPORT.format(i=i, at=at)],
                                  cwd=ROOT, env=env) for i in range(HOSTS)]
        assert [host.wait(60) for host in hosts] == [0] * HOSTS
        wait_until(lambda: receiver.posts, 10, "the notification")
        time.sleep(0.5)
        assert receiver.titles() == ["batch done"]
        with psycopg.connect(url) as conn:
            claimed = conn.execute("SELECT key, host FROM notifications_notificationevent"
                                   ).fetchall()
            sent = conn.execute("SELECT state, ok FROM notifications_notification"
                                ).fetchall()
        assert len(claimed) == 1 and claimed[0][0] == "batch_finished:1:v5"
        assert sent == [("sent", True)]
