"""Site sessions end to end: real Chromium, the demo site, the real database.

Capture through the demo's scripted sign-in URL, upload a storage state, refuse a start
without a session, and recover from a session that expires mid-run: the pool pauses
itself, a new capture plus resume finishes the batch with nothing lost. No cookie value
may appear in a log, a page or the database.
"""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client

from poolsite.batches.batch_import import batch_import_rows
from poolsite.batches.models import ControlAction, Document, Status
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from poolsite.sessions import signin
from poolsite.sessions.models import SiteSession
from poolsite.supervisor.controls import ControlRefused, request_control
from poolsite.supervisor.host import HostSupervisor
from poolsite.supervisor.models import PoolPlan
from tests.poolsite.dashboard_personas import operator as make_operator
from tests.runpool_harness import ROOT, deployment, wait_for

pytestmark = pytest.mark.timeout(240)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cookie_values(path: Path) -> list[str]:
    return [c["value"] for c in json.loads(path.read_text())["cookies"]]


def test_it_captures_through_the_sign_in_url_then_a_batch_completes(
        site: DemoSite, tmp_path: Path) -> None:
    deploy = deployment(tmp_path, site)
    pos = catalog.demo_batch(site.base_url, 4)
    batch_id = deploy.import_batch(pos)
    refused = subprocess.run(
        [sys.executable, "manage.py", "runpool", "--no-web", "--exit-when-idle", "--batch",
         str(batch_id)], cwd=ROOT, env=deploy.env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "session for demo is not signed in — capture it again" in refused.stderr

    captured = deploy.manage("capture_session", "--site", "demo", "--url",
                             site.signin_url(), "--headless", timeout=120)
    assert "session for demo saved: 1 cookie(s) for 127.0.0.1" in captured.stdout
    state = deploy.data_dir / "sessions" / "demo" / "storage-state.json"
    assert (_mode(state.parent.parent), _mode(state.parent), _mode(state)) == (
        0o700, 0o700, 0o600)

    # No --storage-state: the host runs on the session saved for the batch's site.
    run = deploy.manage("runpool", "--no-web", "--exit-when-idle", "--batch", str(batch_id),
                        "--pool-size", "2", timeout=240)

    assert set(deploy.statuses(batch_id).values()) == {"COMPLETED"}
    actions = deploy.query("SELECT action, outcome FROM batches_controlaction ORDER BY id")
    assert actions == [("capture_session", "done"), ("start", "done")]
    assert deploy.query("SELECT site, cookie_count, last_probe_ok, captured_by_name "
                        "FROM site_sessions_sitesession")[0][:3] == ("demo", 1, 1)
    # The drivers' shared compile cache stays by design (pool_core.pool.NODE_CACHE_DIR).
    assert [item for item in deploy.leftovers() if "node-compile-cache" not in item] == []
    with_values = "\n".join([captured.stdout, captured.stderr, run.stdout, run.stderr,
                             deploy.log(), _sqlite_dump(deploy.data_dir / "poolsite.sqlite3")])
    for value in _cookie_values(state):
        assert value not in with_values


def test_runpool_signs_the_demo_site_in_once_and_keeps_the_session_across_restarts(
        site: DemoSite, tmp_path: Path) -> None:
    deploy = deployment(tmp_path, site)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        deploy.env["POOL_DEMO_PORT"] = str(sock.getsockname()[1])
    runs = [deploy.manage("runpool", "--no-web", "--exit-when-idle", "--with-demo-site",
                          timeout=120) for _ in range(2)]

    assert all("demo site signed in" in run.stdout for run in runs)
    # The second start found the saved session still signed in (stable demo secret).
    # The first start also set up the "Demo site"; the second found it as it was.
    assert deploy.query("SELECT action, outcome, username FROM batches_controlaction") == [
        ("add_site", "done", "runpool --with-demo-site"),
        ("capture_session", "done", "runpool --with-demo-site")]
    assert deploy.query("SELECT site, source, last_probe_ok FROM site_sessions_sitesession"
                        ) == [("demo", "demo", 1)]
    output = "".join(run.stdout + run.stderr for run in runs)
    state = deploy.data_dir / "sessions" / "demo" / "storage-state.json"
    assert all(value not in output for value in _cookie_values(state))


@pytest.fixture
def host(start_host: Callable[..., HostSupervisor], tmp_path: Path,
         settings: Any) -> HostSupervisor:
    """An in-process host given no session of its own: it uses the session store."""
    settings.DATA_DIR = tmp_path / "data"
    settings.POOL_SESSION_PREFLIGHT = True
    return start_host(signed_in=False)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_start_without_a_session_then_recovers_from_one_expiring_mid_run(
        site: DemoSite, host: HostSupervisor, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    operator = make_operator()
    client = Client()
    client.force_login(operator)
    pos = catalog.demo_batch(site.base_url, 8)
    batch = batch_import_rows(pos, name="sessions")

    with pytest.raises(ControlRefused,
                       match="session for demo is not signed in — capture it again"):
        request_control(operator, "start", batch=batch)
    assert PoolPlan.current().state == PoolPlan.State.IDLE

    uploaded = site.storage_state()
    page = client.post("/site-sessions/upload/", {
        "site": "demo", "base_url": site.base_url,
        "file": SimpleUploadedFile("state.json", json.dumps(uploaded).encode())},
        follow=True).content.decode()
    assert "Session for demo saved: 1 cookie(s); probe: signed in" in page

    site.latency = 0.4  # long enough a run to expire the session in the middle of it
    request_control(operator, "start", batch=batch, size=2)
    wait_for(lambda: batch.pos.filter(status=Status.COMPLETED).count() >= 2, 90, "2 POs done")
    site.expire_sessions()
    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.PAUSED, 60, "auto-pause")
    assert PoolPlan.current().reason.startswith("LOGIN_REQUIRED")
    assert not batch.pos.exclude(status__in=(Status.QUEUED, Status.RUNNING,
                                             Status.COMPLETED)).exists()

    recaptured = signin.capture("demo", start_url=site.signin_url(), headless=True,
                                wait_s=30, user=operator)
    site.latency = 0.0
    request_control(operator, "resume")
    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.IDLE, 120, "batch finished")

    assert set(batch.pos.values_list("status", flat=True)) == {Status.COMPLETED}
    expected = sum(len(catalog.expected(po["po_number"]).attachments) for po in pos)
    assert Document.objects.filter(
        po__batch=batch, source__in=("po", "requisition")).count() == expected
    actions = list(ControlAction.objects.order_by("id").values_list("action", "outcome"))
    assert actions == [("start", "refused"), ("upload_session", "done"), ("start", "done"),
                       ("capture_session", "done"), ("resume", "done")]
    assert recaptured.captured_by_name == operator.username

    values = [*(c["value"] for c in uploaded["cookies"]),
              *_cookie_values(recaptured.full_path)]
    pages = client.get("/site-sessions/").content.decode() + client.get("/").content.decode()
    assert "demo" in pages and SiteSession.objects.get().cookie_count == 1
    for value in values:
        assert value not in caplog.text
        assert value not in pages
        assert value not in _django_dump()


def _sqlite_dump(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path, timeout=30) as conn:
        return "\n".join(conn.iterdump())


def _django_dump() -> str:
    connection.ensure_connection()
    raw = connection.connection
    if hasattr(raw, "iterdump"):
        return "\n".join(raw.iterdump())
    with connection.cursor() as cursor:  # PostgreSQL: every text column of our tables
        rows: list[str] = []
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            rows.extend(map(str, cursor.fetchall()))
        return "\n".join(rows)


@pytest.mark.django_db(transaction=True)
def test_an_uploaded_cookie_file_for_a_foreign_host_is_refused(
        site: DemoSite, settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "data"
    client = Client()
    client.force_login(make_operator())
    export = [{"domain": "127.0.0.2", "name": "sid", "value": "foreign-cookie-value",
               "path": "/", "hostOnly": True}]
    response = client.post("/site-sessions/upload/", {
        "site": "demo", "file": SimpleUploadedFile("cookies.json", json.dumps(export).encode())})
    page = response.content.decode()
    assert response.status_code == 400
    assert "outside the allow-list of site &#x27;demo&#x27;: 127.0.0.2" in page
    assert "foreign-cookie-value" not in page and "foreign-cookie-value" not in _django_dump()
    assert not SiteSession.objects.exists()
    assert list(ControlAction.objects.values_list("action", "outcome")) == [
        ("upload_session", "refused")]
