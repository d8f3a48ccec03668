"""Scale-out on real PostgreSQL and Redis: several `runpool --no-web` hosts, one batch.

Mandatory in CI (.ci/run sets the service URLs); elsewhere skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from channels_redis.core import RedisChannelLayer

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.conftest import fresh_postgres_database, service_url
from tests.runpool_harness import Deployment, wait_for

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
    for po in pos:  # the demo site saw every PO page exactly once
        assert site.visits(f"/order_headers/{po['po_number'][2:]}") == 1, po["po_number"]
    with psycopg.connect(postgres_url) as conn:
        per_host: dict[str, int] = dict(conn.execute(
            "SELECT host, COUNT(*) FROM batches_attempt GROUP BY host").fetchall())
        duplicates = conn.execute(
            "SELECT po_id, path, COUNT(*) FROM batches_document GROUP BY po_id, path "
            "HAVING COUNT(*) > 1").fetchall()
    assert len(per_host) == 2 and all(n > 0 for n in per_host.values()), per_host
    assert sum(per_host.values()) == len(pos)
    assert duplicates == []
    assert any(m.get("type") == "pool.update" for m in received)
    wait_for(lambda: not deploy.leftovers(), 10, "no Chromium or temp root left")
