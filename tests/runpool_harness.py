"""Drive `manage.py runpool` as a real subprocess against the demo site, and read the
outcome straight from its SQLite file (the test's own Django database is another one).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pool_core.process_tree import is_gone, processes_naming
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Deployment:
    """A private poolsite installation: data folder, temp folder, environment."""

    base: Path
    env: dict[str, str]

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def tmp_dir(self) -> Path:
        return self.base / "tmp"

    @property
    def output_dir(self) -> Path:
        return self.data_dir / "output"

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done

    def runpool(self, *args: str, log_name: str = "runpool.log") -> subprocess.Popen[str]:
        log = open(self.base / log_name, "a")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([sys.executable, "manage.py", "runpool", *args], cwd=ROOT,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)

    def log(self, name: str = "runpool.log") -> str:
        path = self.base / name
        return path.read_text() if path.exists() else ""

    def import_batch(self, pos: list[dict[str, Any]], name: str = "batch") -> int:
        path = self.base / f"{name}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["po_number", "supplier", "url",
                                                        "amount"])
            writer.writeheader()
            writer.writerows(pos)
        out = self.manage("import_batch", str(path), "--name", name).stdout
        return int(out.split("batch #")[1].split()[0])

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "poolsite.sqlite3", timeout=30) as conn:
            return list(conn.execute(sql, params))

    def statuses(self, batch_id: int) -> dict[str, str]:
        return dict(self.query("SELECT po_number, status FROM batches_purchaseorder "
                               "WHERE batch_id = ?", batch_id))

    def leftovers(self) -> list[str]:
        """Worker temp roots, or processes naming our temp folder, still around.

        (The engine's Node compile cache beside them is kept on purpose.)
        """
        found = [f"root {p.name}" for p in self.tmp_dir.glob("poolsite-*-w*")]
        found += [f"process {p.pid}" for p in processes_naming(str(self.tmp_dir))
                  if not is_gone(p)]
        return found


def deployment(base: Path, site: DemoSite) -> Deployment:
    """Create the folders, migrate, and give the workers a session on the demo site."""
    (base / "tmp").mkdir(parents=True)
    state = base / "storage-state.json"
    state.write_text(json.dumps(site.storage_state()))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(POOL_DATA_DIR=str(base / "data"), TMPDIR=str(base / "tmp"),
               POOL_POLL_SECONDS="0.3", POOL_LEASE_SECONDS="20", POOL_LOG_LEVEL="INFO")
    found = Deployment(base=base, env=env)
    found.manage("migrate", "--noinput")
    return found


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def expected_files(po_number: str) -> dict[str, str]:
    """sha256 -> attachment name, from the demo site's ground truth."""
    return {a.sha256: a.name for a in catalog.expected(po_number).attachments}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serving(url: str) -> bool:
    """Whether `url` answers 200 (runpool's web server is up)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.HTTPError):
        return False


def stop(proc: subprocess.Popen[str], timeout: float) -> None:
    """SIGTERM runpool (a graceful stop); SIGKILL it if it takes longer than `timeout`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def serving_runpool(deploy: Deployment, *args: str) -> Iterator[str]:
    """Run `runpool --port <free> *args` until the block ends; yield its address.

    Afterwards the deployment must have left nothing behind (browsers, temp roots).
    """
    port = free_port()
    proc = deploy.runpool("--port", str(port), *args)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: serving(f"{url}/accounts/login/"), 60, "runpool to serve")
        yield url
    finally:
        stop(proc, timeout=60)
    leftovers = [i for i in deploy.leftovers() if "node-compile-cache" not in i]
    assert leftovers == [], leftovers
