"""Supervisor figures: claim latency and status endpoints with 10,000 POs, runpool's CPU.

    .venv/bin/python bench/bench_supervisor.py [--rows 10000] [--cpu-batch 120]

* claim latency: time of one `PurchaseOrder.objects.claim` with 10,000 queued POs, on SQLite
  and (when POOL_TEST_DATABASE_URL is set) PostgreSQL; p50/p95 of 500 claims.
* status endpoints: /healthz and /metrics p50/p95 over 200 requests with 10,000 POs.
* supervisor CPU: `runpool --no-web` with 8 workers on a demo batch at 1 s latency;
  CPU of the runpool process itself (not its workers), sampled every second.

Each backend runs in a child process with its own DATABASE_URL (Django is set up once
per process). Prints a table; no timed asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- inside a child process (Django configured for one database) ------------------------
def child_measure(rows: int) -> dict[str, float]:
    import django

    django.setup()
    from datetime import timedelta

    from django.core.management import call_command
    from django.test import Client

    from poolsite.batches.batch_import import batch_import_rows
    from poolsite.batches.models import PurchaseOrder

    call_command("migrate", verbosity=0)
    base = "http://127.0.0.1:8001"
    batch = batch_import_rows([{"po_number": f"PO{300000 + i}", "supplier": "Acme",
                                "url": f"{base}/order_headers/{300000 + i}",
                                "amount": "12.50"} for i in range(rows)], name="bench")
    claims = []
    for _ in range(500):
        started = time.perf_counter()
        po = PurchaseOrder.objects.claim(batch.pk, "bench-host", timedelta(seconds=60))
        claims.append((time.perf_counter() - started) * 1000)
        assert po is not None
    client = Client()
    figures = {"claim_p50_ms": percentile(claims, 0.5), "claim_p95_ms": percentile(claims, 0.95)}
    for path in ("/healthz", "/metrics"):
        times = []
        for _ in range(200):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        name = path.strip("/")
        figures[f"{name}_p50_ms"] = percentile(times, 0.5)
        figures[f"{name}_p95_ms"] = percentile(times, 0.95)
    return figures


def run_child(database_url: str, data_dir: Path, rows: int) -> dict[str, float]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "poolsite.settings",
           "POOL_DATA_DIR": str(data_dir), "DATABASE_URL": database_url}
    out = subprocess.run([sys.executable, __file__, "--child", "--rows", str(rows)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SystemExit(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_backends(rows: int) -> dict[str, dict[str, float]]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = run_child("", Path(tmp), rows)
    server = os.environ.get("POOL_TEST_DATABASE_URL", "")
    if server:
        import psycopg

        name = f"poolsite_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results["PostgreSQL"] = run_child(server.rsplit("/", 1)[0] + f"/{name}",
                                                  Path(tmp), rows)
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


# -- runpool CPU --------------------------------------------------------------------------
def measure_supervisor_cpu(batch_size: int) -> dict[str, float]:
    import psutil

    sys.path.insert(0, str(ROOT))
    from pool_core.process_tree import worker_processes
    from poolsite.demo_erp import catalog
    from poolsite.demo_erp.server import DemoSite
    from tests.runpool_harness import deployment

    site = DemoSite(latency=1.0).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            deploy = deployment(Path(tmp) / "d", site)
            deploy.env["POOL_POLL_SECONDS"] = "1.0"  # the production default, not the tests'
            batch_id = deploy.import_batch(catalog.demo_batch(site.base_url, batch_size))
            proc = deploy.runpool("--no-web", "--exit-when-idle", "--batch", str(batch_id),
                                  "--pool-size", "8", "--storage-state",
                                  str(Path(tmp) / "d" / "storage-state.json"))
            me = psutil.Process(proc.pid)
            samples: list[float] = []
            me.cpu_percent(None)
            started = time.monotonic()
            try:
                while proc.poll() is None:
                    time.sleep(1.0)
                    try:
                        cpu = me.cpu_percent(None)
                        workers = len(worker_processes(me.pid))
                    except psutil.Error:
                        continue
                    if workers >= 8:  # only while all eight workers are up
                        samples.append(cpu)
                proc.wait(900)
            finally:
                if proc.poll() is None:
                    proc.kill()
            wall = time.monotonic() - started
            statuses = deploy.statuses(batch_id)
    finally:
        site.stop()
    return {"cpu_mean_pct": statistics.mean(samples) if samples else float("nan"),
            "cpu_p95_pct": percentile(samples, 0.95) if samples else float("nan"),
            "samples": len(samples), "wall_s": wall,
            "completed": sum(s == "COMPLETED" for s in statuses.values()),
            "pos": len(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--cpu-batch", type=int, default=120)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_measure(args.rows)))
        return
    backends = measure_backends(args.rows)
    print(f"\nWith {args.rows:,} POs in the database (500 claims, 200 requests each):")
    print(f"{'backend':<12} {'claim p50':>10} {'claim p95':>10} {'healthz p95':>12} "
          f"{'metrics p95':>12}")
    for name, f in backends.items():
        print(f"{name:<12} {f['claim_p50_ms']:>8.2f}ms {f['claim_p95_ms']:>8.2f}ms "
              f"{f['healthz_p95_ms']:>10.2f}ms {f['metrics_p95_ms']:>10.2f}ms")
    cpu = measure_supervisor_cpu(args.cpu_batch)
    print(f"\nrunpool --no-web, 8 workers, {cpu['pos']} POs at 1 s latency: "
          f"{cpu['completed']} completed in {cpu['wall_s']:.0f} s; supervisor process CPU "
          f"mean {cpu['cpu_mean_pct']:.1f}% / p95 {cpu['cpu_p95_pct']:.1f}% of one core "
          f"({cpu['samples']} samples)")


if __name__ == "__main__":
    main()
