"""Load: one big batch end to end through `runpool` with 8 workers at low page latency.

    .venv/bin/python bench/bench_load.py [--pos 10000] [--workers 8] [--latency 0.05]

Prints POs/minute, memory per worker over time (PSS of each worker's whole tree:
Python, driver, browser), and the two numbers that must be zero: POs lost (not final
at the end) and POs done twice (more than one visit to a PO page on the demo site, or
more than one successful attempt). Writes bench/results/load.json and, when matplotlib
is installed (`pip install -e '.[bench]'`), bench/results/load_memory.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pool_core.process_tree import tree_pss_mb, worker_processes  # noqa: E402
from poolsite.demo_erp import catalog  # noqa: E402
from poolsite.demo_erp.server import DemoSite  # noqa: E402
from tests.runpool_harness import deployment  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def worker_pids(supervisor: int) -> list[int]:
    return [worker.pid for worker in worker_processes(supervisor)]


def run(pos: int, workers: int, latency: float) -> dict:
    site = DemoSite(latency=latency).start()
    samples: list[tuple[float, list[float]]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            deploy = deployment(Path(tmp) / "d", site)
            deploy.env["POOL_POLL_SECONDS"] = "1.0"
            batch_id = deploy.import_batch(catalog.demo_batch(site.base_url, pos))
            started = time.monotonic()
            proc = deploy.runpool("--no-web", "--exit-when-idle", "--batch", str(batch_id),
                                  "--pool-size", str(workers), "--storage-state",
                                  str(Path(tmp) / "d" / "storage-state.json"))
            try:
                while proc.poll() is None:
                    time.sleep(5)
                    try:
                        pss = [tree_pss_mb(pid) for pid in worker_pids(proc.pid)]
                    except psutil.Error:
                        continue
                    if pss:
                        samples.append((time.monotonic() - started, pss))
                        done = deploy.query("SELECT COUNT(*) FROM batches_purchaseorder "
                                            "WHERE status NOT IN ('QUEUED', 'RUNNING')")[0][0]
                        print(f"  {time.monotonic() - started:6.0f} s  {done:6d}/{pos} POs  "
                              f"worker PSS median {statistics.median(pss):.0f} MB",
                              flush=True)
                proc.wait(60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            wall = time.monotonic() - started
            statuses = deploy.statuses(batch_id)
            twice_by_site = sum(1 for p in statuses if site.hits(f"/order_headers/{p[2:]}") > 1)
            twice_by_db = deploy.query(
                "SELECT COUNT(*) FROM (SELECT po_id FROM batches_attempt WHERE status IN "
                "('COMPLETED', 'PARTIAL', 'NO_ATTACHMENTS') GROUP BY po_id "
                "HAVING COUNT(*) > 1)")[0][0]
    finally:
        site.stop()
    completed = sum(1 for s in statuses.values() if s == "COMPLETED")
    lost = sum(1 for s in statuses.values() if s in ("QUEUED", "RUNNING")) + (
        pos - len(statuses))
    medians = [statistics.median(p) for _, p in samples]
    return {"pos": pos, "workers": workers, "latency_s": latency, "wall_s": round(wall, 1),
            "pos_per_minute": round(len(statuses) * 60 / wall, 1), "completed": completed,
            "lost": lost, "done_twice_site_hits": twice_by_site,
            "done_twice_attempts": twice_by_db,
            # a quarter into the run: after start-up, before any drift
            "pss_median_mb_first": round(medians[len(medians) // 4], 1) if medians else None,
            "pss_median_mb_last": round(medians[-1], 1) if medians else None,
            "pss_max_mb": round(max(max(p) for _, p in samples), 1) if samples else None,
            "samples": [(round(t, 1), [round(x, 1) for x in p]) for t, p in samples]}


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    times = [t for t, _ in result["samples"]]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(times, [statistics.median(p) for _, p in result["samples"]], label="median")
    ax.plot(times, [max(p) for _, p in result["samples"]], label="max")
    ax.set_xlabel("seconds")
    ax.set_ylabel("PSS per worker tree (MB)")
    ax.set_title(f"{result['pos']} POs, {result['workers']} workers: memory per worker")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pos", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    result = run(args.pos, args.workers, args.latency)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(result, indent=1))
    plotted = plot(result, RESULTS / "load_memory.png")
    print(f"\n{result['pos']} POs, {result['workers']} workers, {result['latency_s']} s "
          f"latency: {result['wall_s']} s, {result['pos_per_minute']} POs/min, "
          f"{result['completed']} completed; lost {result['lost']}, done twice "
          f"{result['done_twice_site_hits']} (site hits) / {result['done_twice_attempts']} "
          f"(attempts); worker PSS median {result['pss_median_mb_first']} -> "
          f"{result['pss_median_mb_last']} MB, max {result['pss_max_mb']} MB"
          + ("; plot bench/results/load_memory.png" if plotted else ""))


if __name__ == "__main__":
    main()
