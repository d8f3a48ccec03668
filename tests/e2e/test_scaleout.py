"""Scale-out on real PostgreSQL and Redis: several `runpool --no-web` hosts, one batch.

Mandatory in CI (.ci/run sets the service URLs); elsewhere skipped with the reason.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from channels_redis.core import RedisChannelLayer
from playwright.sync_api import WebSocket, sync_playwright

from pool_core.browser import launch_args
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.conftest import fresh_postgres_database, service_url
from tests.runpool_harness import Deployment, free_port, serving, wait_for

pytestmark = pytest.mark.scaleout


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    with fresh_postgres_database(service_url("POOL_TEST_DATABASE_URL")) as url:
        yield url


def _scaleout_deployment(tmp_path: Path, site: DemoSite, database: str, redis: str,
                         prefix: str) -> Deployment:
    base = tmp_path
    (base / "tmp").mkdir(parents=True)
    env = dict(os.environ)
    env.update(DATABASE_URL=database, REDIS_URL=redis, POOL_REDIS_PREFIX=prefix,
               POOL_DATA_DIR=str(base / "data"), TMPDIR=str(base / "tmp"),
               POOL_POLL_SECONDS="0.3", POOL_LEASE_SECONDS="20")
    deploy = Deployment(base=base, env=env)
    deploy.manage("migrate", "--noinput")
    (base / "storage-state.json").write_text(json.dumps(site.storage_state()))
    return deploy


def _plan_state(database: str) -> str:
    with psycopg.connect(database, connect_timeout=5) as conn:
        row = conn.execute("SELECT state FROM supervisor_poolplan").fetchone()
    return str(row[0]) if row else ""


def _pg_statuses(database: str, batch_id: int) -> dict[str, str]:
    with psycopg.connect(database, connect_timeout=5) as conn:
        rows = conn.execute("SELECT po_number, status FROM batches_purchaseorder "
                            "WHERE batch_id = %s", (batch_id,)).fetchall()
    return dict(rows)


def _pg_attempts(database: str, batch_id: int) -> dict[str, list[tuple[str, Any, Any]]]:
    """Each PO's attempts in order: (status, started_at, finished_at)."""
    found: dict[str, list[tuple[str, Any, Any]]] = {}
    with psycopg.connect(database, connect_timeout=5) as conn:
        for number, status, started, finished in conn.execute(
                "SELECT po.po_number, a.status, a.started_at, a.finished_at "
                "FROM batches_attempt a JOIN batches_purchaseorder po ON po.id = a.po_id "
                "WHERE po.batch_id = %s ORDER BY a.started_at, a.id", (batch_id,)):
            found.setdefault(number, []).append((status, started, finished))
    return found


def test_it_shares_one_batch_between_two_hosts_and_processes_each_po_once(
        site: DemoSite, tmp_path: Path, postgres_url: str) -> None:
    redis = service_url("POOL_TEST_REDIS_URL")
    prefix = f"t{uuid.uuid4().hex[:6]}"
    deploy = _scaleout_deployment(tmp_path, site, postgres_url, redis, prefix)
    pos = catalog.demo_batch(site.base_url, 200)
    batch_id = deploy.import_batch(pos)
    state = str(tmp_path / "storage-state.json")
    received: list[dict] = []

    async def listen() -> None:
        layer = RedisChannelLayer(hosts=[redis], prefix=prefix)
        channel = await layer.new_channel()
        await layer.group_add("pool", channel)
        for _ in range(3):
            received.append(await asyncio.wait_for(layer.receive(channel), timeout=60))
        await layer.group_discard("pool", channel)

    first = deploy.runpool("--no-web", "--exit-when-idle", "--pool-size", "2",
                           "--storage-state", state, "--batch", str(batch_id))
    # The second host joins a running plan (started before it, --exit-when-idle would
    # rightly find nothing to do and leave).
    wait_for(lambda: _plan_state(postgres_url) == "running", 60, "the plan running")
    hosts = [first, deploy.runpool("--no-web", "--exit-when-idle", "--pool-size", "2",
                                   "--storage-state", state)]
    try:
        asyncio.run(listen())  # events cross from --no-web hosts to this process
        for host in hosts:
            host.wait(600)
    finally:
        for host in hosts:
            if host.poll() is None:
                host.kill()
    assert [h.returncode for h in hosts] == [0, 0], deploy.log()[-3000:]

    assert _pg_statuses(postgres_url, batch_id) == {po["po_number"]: "COMPLETED" for po in pos}
    attempts = _pg_attempts(postgres_url, batch_id)
    for po in pos:
        number = po["po_number"]
        tries = attempts[number]
        # Every visit of the PO's page is one recorded attempt: no host opened it
        # behind another's back. A retry (a download that timed out on a loaded
        # machine) is a second visit and a second attempt, after the first ended.
        assert site.visits(f"/order_headers/{number[2:]}") == len(tries), (number, tries)
        assert [t[0] for t in tries].count("COMPLETED") == 1, (number, tries)
        assert all(t[0] != "COMPLETED" for t in tries[:-1]), (number, tries)
        for earlier, later in itertools.pairwise(tries):  # one at a time, never together
            assert earlier[2] <= later[1], (number, tries)
    with psycopg.connect(postgres_url) as conn:
        per_host: dict[str, int] = dict(conn.execute(
            "SELECT host, COUNT(*) FROM batches_attempt GROUP BY host").fetchall())
        duplicates = conn.execute(
            "SELECT po_id, path, COUNT(*) FROM batches_document GROUP BY po_id, path "
            "HAVING COUNT(*) > 1").fetchall()
    assert len(per_host) == 2 and all(n > 0 for n in per_host.values()), per_host
    assert sum(per_host.values()) == sum(len(t) for t in attempts.values())
    assert duplicates == []
    assert any(m.get("type") == "pool.update" for m in received)
    wait_for(lambda: not deploy.leftovers(), 10, "no Chromium or temp root left")


# Log lines that mean a channel-layer read was cut off: the wake-up listener's warning,
# redis-py's timeout, daphne's report of a consumer that died (the dashboard's socket).
QUIET_BREAKERS = ("wake-up listener failed", "TimeoutError", "Timeout reading",
                  "Exception inside application", "ConnectionError", "Traceback")
IDLE_SECONDS = 12  # well past redis-py 8's default 5 s socket timeout


def _signed_in_cookie(deploy: Deployment) -> str:
    """A session key for a new superuser, made the way Django's test client signs in."""
    code = ("from django.contrib.auth.models import User; from django.test import Client; "
            "u = User.objects.create_superuser('ops', 'ops@example.org', 'x' * 24); "
            "c = Client(); c.force_login(u); print(c.cookies['sessionid'].value)")
    return deploy.manage("shell", "-c", code).stdout.strip().splitlines()[-1]


def test_idle_hosts_and_an_idle_dashboard_stay_quiet_on_redis(
        site: DemoSite, tmp_path: Path, postgres_url: str, browser_path: str) -> None:
    """A --no-web host and a web host with a dashboard open, both idle past 5 s.

    Their channel-layer reads block in Redis (BZPOPMIN) for up to 5 s; a client socket
    timeout no longer than that aborts them: the wake-up listener logs a warning and
    the dashboard's consumer dies (its page reconnects).
    """
    redis = service_url("POOL_TEST_REDIS_URL")
    prefix = f"t{uuid.uuid4().hex[:6]}"
    deploy = _scaleout_deployment(tmp_path, site, postgres_url, redis, prefix)
    # Heartbeats (a pool update per poll) would keep the dashboard's socket busy:
    # poll rarely, so that every channel-layer read here waits in Redis the whole time.
    deploy.env["POOL_POLL_SECONDS"] = "60"
    cookie = _signed_in_cookie(deploy)
    port = free_port()
    logs = {"no-web": "no-web.log", "web": "web.log"}
    hosts = [deploy.runpool("--no-web", log_name=logs["no-web"]),
             deploy.runpool("--port", str(port), log_name=logs["web"])]
    sockets: list[str] = []
    frames: list[str] = []

    def on_socket(ws: WebSocket) -> None:
        sockets.append(ws.url)
        ws.on("framereceived", lambda frame: frames.append(str(frame)))

    def updated() -> bool:
        return any("still-listening" in frame for frame in frames)

    async def send_update() -> None:  # what a supervisor sends, from outside both hosts
        layer = RedisChannelLayer(hosts=[redis], prefix=prefix)
        await layer.group_send("pool", {"type": "pool.update", "workers": {}, "events": [],
                                        "pool": {"reason": "still-listening"}, "sent_at": 0})

    try:
        wait_for(lambda: serving(f"http://127.0.0.1:{port}/accounts/login/"), 60, "the web host")
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=browser_path, args=launch_args())
            context = chromium.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie,
                                  "url": f"http://127.0.0.1:{port}/"}])
            page = context.new_page()
            page.on("websocket", on_socket)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("[data-connection=live]", timeout=20_000)
            page.wait_for_timeout(IDLE_SECONDS * 1000)
            connection = page.eval_on_selector("[data-connection]", "e => e.dataset.connection")
            # The socket still delivers after the idle spell (Playwright's loop owns
            # this thread, so the send runs on another).
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, send_update()).result(timeout=10)
            for _ in range(50):
                if updated():
                    break
                page.wait_for_timeout(100)
            chromium.close()
        assert all(h.poll() is None for h in hosts), [deploy.log(n)[-2000:] for n in logs.values()]
    finally:
        for host in hosts:
            if host.poll() is None:
                host.terminate()
        for host in hosts:
            host.wait(60)
    problems = []
    for which, name in logs.items():
        noisy = [line for line in deploy.log(name).splitlines()
                 if any(b in line for b in QUIET_BREAKERS)]
        if noisy:
            problems.append(f"{which}: {len(noisy)} log lines of broken reads: {noisy[0]}")
    if connection != "live" or len(sockets) != 1:
        problems.append(f"the dashboard reconnected ({connection}, sockets: {len(sockets)})")
    if not updated():
        problems.append("no update reached the dashboard after the idle spell")
    assert problems == [], "\n".join([*problems, *(f"--- {n} ---\n{deploy.log(n)[-1500:]}"
                                                     for n in logs.values())])
