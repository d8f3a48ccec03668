"""PostgreSQL restarts mid-batch: the supervisor retries and loses nothing.

A real `pg_ctlcluster <version> <cluster> restart` of the server a `runpool --no-web`
deployment runs on, while POs are done and others still wait. Needs the test server to
be a local cluster this (root) user can restart; skipped with the reason elsewhere, and
mandatory under POOL_REQUIRE_SERVICES=1 (.ci/run), like the other service tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import psycopg
import pytest

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.conftest import fresh_postgres_database, service_url
from tests.runpool_harness import Deployment, wait_for

pytestmark = pytest.mark.scaleout

PO_COUNT = 48
POOL_SIZE = 3
# Messages the supervisor's threads log when a query meets the restarted server.
RETRY_MESSAGES = ("supervisor step failed; going on", "database unavailable while recording",
                  "could not claim POs")


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("POOL_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _clusters() -> list[list[str]]:
    """`pg_lsclusters` rows: version, cluster, port, status, owner, data dir, log."""
    done = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True,
                          timeout=30, check=True)
    return [line.split() for line in done.stdout.splitlines() if line.strip()]


def _cluster_status(version: str, name: str) -> str:
    for row in _clusters():
        if row[:2] == [version, name]:
            return row[3]
    return ""


def _accepts(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def _ensure_running(version: str, name: str, url: str) -> None:
    """Start the cluster if it is down, and wait until it takes connections."""
    if not _cluster_status(version, name).startswith("online"):
        subprocess.run(["pg_ctlcluster", version, name, "start"], timeout=120, check=False)
    wait_for(lambda: _accepts(url), 60, "PostgreSQL to accept connections", interval=0.5)


@pytest.fixture
def pg_cluster() -> tuple[str, str]:
    """(version, cluster) of the local PostgreSQL the test database URL points at."""
    url = urlsplit(service_url("POOL_TEST_DATABASE_URL"))
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        _unavailable(f"PostgreSQL at {url.hostname} is not local: cannot restart it")
    if not (shutil.which("pg_ctlcluster") and shutil.which("pg_lsclusters")):
        _unavailable("pg_ctlcluster/pg_lsclusters not found: cannot restart PostgreSQL")
    if os.geteuid() != 0:
        _unavailable("restarting PostgreSQL with pg_ctlcluster needs root")
    port = str(url.port or 5432)
    for row in _clusters():
        if len(row) >= 4 and row[2] == port:
            return row[0], row[1]
    _unavailable(f"no PostgreSQL cluster of pg_lsclusters listens on port {port}")


@pytest.fixture
def postgres_url(pg_cluster: tuple[str, str]) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards (server up again)."""
    server = service_url("POOL_TEST_DATABASE_URL")
    with fresh_postgres_database(server) as url:
        try:
            yield url
        finally:
            _ensure_running(*pg_cluster, server)


def _pg(database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def _counts(database: str, batch_id: int) -> dict[str, int]:
    return dict(_pg(database, "SELECT status, COUNT(*) FROM batches_purchaseorder "
                    "WHERE batch_id = %s GROUP BY status", batch_id))


def _postgres_deployment(base: Path, site: DemoSite, database: str) -> Deployment:
    (base / "tmp").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=database, POOL_DATA_DIR=str(base / "data"),
               TMPDIR=str(base / "tmp"), POOL_POLL_SECONDS="0.3", POOL_LEASE_SECONDS="20",
               POOL_LOG_LEVEL="INFO")
    deploy = Deployment(base=base, env=env)
    deploy.manage("migrate", "--noinput")
    (base / "storage-state.json").write_text(json.dumps(site.storage_state()))
    return deploy


def test_postgresql_restarts_mid_batch_and_the_supervisor_loses_nothing(
        site: DemoSite, tmp_path: Path, postgres_url: str,
        pg_cluster: tuple[str, str]) -> None:
    version, cluster = pg_cluster
    server = service_url("POOL_TEST_DATABASE_URL")
    site.latency = 1.0
    deploy = _postgres_deployment(tmp_path, site, postgres_url)
    pos = catalog.demo_batch(site.base_url, PO_COUNT)
    batch_id = deploy.import_batch(pos)
    proc = deploy.runpool("--no-web", "--exit-when-idle", "--batch", str(batch_id),
                          "--pool-size", str(POOL_SIZE), "--storage-state",
                          str(tmp_path / "storage-state.json"))
    started = time.monotonic()
    try:
        def some_done_some_queued() -> bool:
            counts = _counts(postgres_url, batch_id)
            return counts.get("COMPLETED", 0) >= 8 and counts.get("QUEUED", 0) >= 15

        wait_for(some_done_some_queued, 90, "some POs done and many still queued",
                 interval=0.5)
        before = _counts(postgres_url, batch_id)
        booted = _pg(server, "SELECT pg_postmaster_start_time()")[0][0]
        restart_at = time.monotonic() - started
        restart = subprocess.run(["pg_ctlcluster", version, cluster, "restart"],
                                 capture_output=True, text=True, timeout=120)
        assert restart.returncode == 0, restart.stdout + restart.stderr
        wait_for(lambda: _accepts(server), 60, "PostgreSQL back after the restart",
                 interval=0.5)
        back_at = time.monotonic() - started
        assert _pg(server, "SELECT pg_postmaster_start_time()")[0][0] > booted
        assert proc.poll() is None, f"runpool died with the database:\n{deploy.log()[-3000:]}"
        # Work goes on after the restart: POs are claimed and recorded again.
        wait_for(lambda: _counts(postgres_url, batch_id).get("COMPLETED", 0)
                 >= before.get("COMPLETED", 0) + POOL_SIZE + 2, 60,
                 "POs completed after the restart", interval=0.5)
        assert proc.poll() is None, f"runpool died after the restart:\n{deploy.log()[-3000:]}"
        proc.wait(max(1.0, 150 - (time.monotonic() - started)))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        _ensure_running(version, cluster, server)
    log = deploy.log()
    assert proc.returncode == 0, log[-3000:]
    assert before.get("QUEUED", 0) >= 15 and before.get("COMPLETED", 0) >= 8, before
    assert any(message in log for message in RETRY_MESSAGES), log[-3000:]  # it really bit
    assert "gave up recording" not in log, log[-3000:]

    # Every PO final exactly once: all COMPLETED, each PO page fetched once, one attempt
    # and one set of files each.
    statuses = dict(_pg(postgres_url, "SELECT po_number, status FROM batches_purchaseorder "
                        "WHERE batch_id = %s", batch_id))
    assert statuses == {po["po_number"]: "COMPLETED" for po in pos}
    for po in pos:
        assert site.visits(f"/order_headers/{po['po_number'][2:]}") == 1, po["po_number"]
    attempts = dict(_pg(postgres_url, "SELECT po_id, COUNT(*) FROM batches_attempt "
                        "GROUP BY po_id"))
    assert len(attempts) == len(pos) and set(attempts.values()) == {1}, attempts
    duplicates = _pg(postgres_url, "SELECT po_id, path, COUNT(*) FROM batches_document "
                     "GROUP BY po_id, path HAVING COUNT(*) > 1")
    assert duplicates == []
    undocumented = _pg(postgres_url, "SELECT po.po_number FROM batches_purchaseorder po "
                       "WHERE NOT EXISTS (SELECT 1 FROM batches_document d "
                       "WHERE d.po_id = po.id)")
    assert undocumented == []
    # The host's run ended normally and the host signed off: no crash was recorded.
    runs = _pg(postgres_url, "SELECT state FROM batches_run")
    assert runs and {state for (state,) in runs} == {"finished"}, runs
    hosts = _pg(postgres_url, "SELECT name FROM supervisor_poolhost WHERE stopped_at IS NULL")
    assert hosts == []
    wait_for(lambda: not deploy.leftovers(), 15, "no Chromium or temp root left")
    print(f"PostgreSQL restarted {restart_at:.1f} s into the batch, back at {back_at:.1f} s "
          f"({before}); batch done in {time.monotonic() - started:.1f} s")
