"""Seconds per PO for process_po, step by step, and its overhead beyond the site's latency.

    .venv/bin/python bench/bench_processing.py [--latency 1.0] [--count 10]

One demo site (in this process) answers every page and attachment after `latency`
seconds; one browser, one page, POs one after another (after one warm-up PO), the page
emptied between them as a worker does.
A PO's unavoidable wait is latency x its sequential round trips: the PO page, the
requisition page when it falls back to it, and one wave of downloads (they run in
parallel). Overhead = wall time - that wait; the target is <= 300 ms median.
Prints a table; writes bench/results/processing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: `python bench/bench_processing.py`
    sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from pool_core.browser import find_browser, launch_args  # noqa: E402
from pool_core.config import JobEnv  # noqa: E402
from pool_core.messages import Task, TaskResult  # noqa: E402
from pool_core.processing import process_po  # noqa: E402
from pool_core.sites import load_preset  # noqa: E402
from poolsite.demo_erp import catalog  # noqa: E402
from poolsite.demo_erp.server import DemoSite  # noqa: E402

RESULTS = REPO / "bench" / "results"
STEPS = ("setup", "navigate", "classify", "attachments", "requisition", "downloads", "pdf",
         "save", "close")
WARM_UP = catalog.NO_ATTACHMENTS


def round_trips(number: str) -> int:
    """Sequential requests that each wait `latency`: page, [requisition], download wave."""
    po = catalog.find(number)
    assert po is not None
    return 1 + (0 if po.po_attachments else 1) + (1 if catalog.expected(number).attachments else 0)


def bench(latency: float, numbers: list[str]) -> list[dict]:
    site = DemoSite(latency=latency).start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-processing-") as tmp, \
                sync_playwright() as pw:
            job = job_for(site, Path(tmp))
            browser = pw.chromium.launch(executable_path=find_browser(), args=launch_args())
            context = browser.new_context(
                storage_state=site.storage_state(),  # type: ignore[arg-type]
                accept_downloads=True)
            page = context.new_page()  # one page for every PO, as in a worker
            process_po(page, task_for(site, WARM_UP), job)
            for number in numbers:
                started = time.perf_counter()
                result = process_po(page, task_for(site, number), job)
                page.goto("about:blank")  # as a worker does between POs
                wall = time.perf_counter() - started
                rows.append(row_of(number, result, wall, latency))
            browser.close()
    finally:
        site.stop()
    return rows


def job_for(site: DemoSite, tmp: Path) -> JobEnv:
    return JobEnv(worker_id=1, output_root=str(tmp / "out"), work_root=str(tmp / "work"),
                  evidence_dir=str(tmp / "evidence"),
                  site=load_preset("demo").with_base_url(site.base_url),
                  nav_timeout_s=30.0, download_timeout_s=30.0)


def task_for(site: DemoSite, number: str) -> Task:
    row = catalog.po_dict(site.base_url, number)
    return Task(key=number, po_number=number, supplier=row["supplier"], url=row["url"],
                amount=Decimal(row["amount"]), batch="bench")


def row_of(number: str, result: TaskResult, wall: float, latency: float) -> dict:
    wait = latency * round_trips(number)
    return {"po": number, "status": str(result.status), "files": len(result.files),
            "wall_s": wall, "site_wait_s": wait, "overhead_s": wall - wait,
            "steps": dict(result.steps)}


def report(rows: list[dict], latency: float) -> dict:
    print(f"{'PO':10} {'status':10} {'files':>5} {'wall':>6} {'wait':>5} {'over':>6}  "
          + " ".join(f"{s[:8]:>8}" for s in STEPS))
    for r in rows:
        print(f"{r['po']:10} {r['status']:10} {r['files']:5d} {r['wall_s']:6.3f} "
              f"{r['site_wait_s']:5.1f} {r['overhead_s'] * 1000:5.0f}ms  "
              + " ".join(f"{r['steps'].get(s, 0.0):8.3f}" for s in STEPS))
    summary = {
        "latency_s": latency, "pos": len(rows), "load_average_1m": os.getloadavg()[0],
        "median_s_per_po": statistics.median(r["wall_s"] for r in rows),
        "median_overhead_ms": 1000 * statistics.median(r["overhead_s"] for r in rows),
        "max_overhead_ms": 1000 * max(r["overhead_s"] for r in rows),
        "median_step_s": {s: statistics.median(r["steps"].get(s, 0.0) for r in rows)
                          for s in STEPS},
    }
    print(f"\nmedian {summary['median_s_per_po']:.3f} s per PO at {latency:g} s latency; "
          f"overhead beyond the site's latency: median {summary['median_overhead_ms']:.0f} ms, "
          f"max {summary['max_overhead_ms']:.0f} ms (target <= 300 ms median); "
          f"load average {summary['load_average_1m']:.1f} on {os.cpu_count()} CPUs")
    print("median per step (s): " + ", ".join(
        f"{k} {v:.3f}" for k, v in summary["median_step_s"].items()))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=10, help="normal demo POs to add")
    args = parser.parse_args(argv)
    numbers = [catalog.ONE_PDF, catalog.SEVERAL, catalog.REQUISITION_ONLY]
    numbers += [f"PO{catalog.NORMAL_START + i}" for i in range(args.count)]
    rows = bench(args.latency, numbers)
    summary = report(rows, args.latency)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "processing.json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
