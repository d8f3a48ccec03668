"""Seconds per PO for process_po, step by step, and its overhead beyond the site's latency.

    .venv/bin/python bench/bench_processing.py [--latency 1.0] [--count 10] [--shape simple]

One demo site (in this process) answers every signed-in request (pages, the comments
API, files) after `latency` seconds, in the "coupa" page shape by default; one
browser, one page, POs one after another (after one warm-up PO), the page emptied
between them as a worker does.

Overhead = wall time - the site's own wait, where the wait is what the site makes any
client sit through, counted as the engine sequences its requests:
  simple: latency x (PO page + [requisition page] + one wave of downloads, in parallel)
  coupa:  latency x PO page + (latency + comments delay) for its comments, which the
          page fetches only after `load`; the same again for the requisition page
          when the PO has no files; the header spans are on the page at `load`, so
          the engine clicks them (one at a time, latency each: a span whose script
          navigates the page would cancel the previous one's download) while the
          comments render, i.e. max(comments, latency x spans); then latency x one
          wave for the comments' files (in parallel, the page PDF printed meanwhile).
The coupa rows also show `ideal`: the wait of a client that overlaps all it can: the
header spans are on the page at `load`, so it clicks them while the comments render
(only spans that navigate the page go one at a time), and fetches the comments' files
in one wave as soon as they appear. `wait - ideal` is what the engine's order of
requests costs; it is not counted as overhead.
The target is <= 300 ms median overhead. Prints a table; writes
bench/results/processing.json.
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
from pool_core.egress_proxy import EgressProxy  # noqa: E402
from pool_core.messages import Task, TaskResult  # noqa: E402
from pool_core.processing import process_po  # noqa: E402
from pool_core.sites import load_preset  # noqa: E402
from poolsite.demo_erp import catalog  # noqa: E402
from poolsite.demo_erp.server import COMMENTS_DELAY, DemoSite  # noqa: E402

RESULTS = REPO / "bench" / "results"
STEPS = ("setup", "navigate", "classify", "attachments", "downloads", "pdf", "save",
         "close")
WARM_UP = catalog.NO_ATTACHMENTS


def round_trips(number: str) -> int:
    """Sequential requests that each wait `latency`: page, [requisition], download wave."""
    po = catalog.find(number)
    assert po is not None
    return 1 + (0 if po.po_attachments else 1) + (1 if catalog.expected(number).attachments else 0)


def coupa_wait(number: str, latency: float, delay: float) -> tuple[float, float]:
    """(the site's wait as the engine sequences it, the ideal overlapped wait); seconds."""
    po = catalog.find(number, shape="coupa")
    assert po is not None
    on_requisition = not po.po_attachments  # the requisition when the PO has no files
    files = [f for f in catalog.coupa_files(po) if f.on_requisition == on_requisition]
    comments = latency + delay  # fetched by the page once it has loaded
    # A PO without files is known to be one only once its comments have rendered.
    before = (latency + comments) if on_requisition else 0.0
    spans = [f for f in files if f.place == catalog.HEADER]
    navigating = sum(1 for f in spans if f.click == catalog.ASSIGN)
    windows = len(spans) - navigating
    wave = latency if any(f.place == catalog.COMMENTS for f in files) else 0.0
    engine = before + latency + max(comments, latency * len(spans)) + wave
    ideal = before + latency + max(comments + wave, latency * navigating,
                                   latency if windows else 0.0)
    return engine, ideal


def bench(latency: float, numbers: list[str], shape: str) -> list[dict]:
    """Each PO on a worker's browser (through its egress proxy) and on a browser that
    connects directly, side by side, alternating which goes first."""
    site = DemoSite(latency=latency, shape=shape).start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-processing-") as tmp, \
                sync_playwright() as pw:
            job = job_for(site, Path(tmp), shape)
            assert job.site is not None
            with EgressProxy(job.site.connect_addresses) as proxy:
                pages = {}
                for egress, extra in (("proxy", proxy.browser_args()), ("direct", [])):
                    browser = pw.chromium.launch(executable_path=find_browser(),
                                                 args=[*launch_args(), *extra])
                    context = browser.new_context(
                        storage_state=site.storage_state(),  # type: ignore[arg-type]
                        accept_downloads=True)
                    pages[egress] = context.new_page()  # one page for every PO
                    process_po(pages[egress], task_for(site, WARM_UP), job)
                for i, number in enumerate(numbers):
                    order = ("proxy", "direct") if i % 2 == 0 else ("direct", "proxy")
                    for egress in order:
                        before = site.third_party_hits + site.canary_hits
                        page = pages[egress]
                        started = time.perf_counter()
                        result = process_po(page, task_for(site, number), job)
                        page.goto("about:blank")  # as a worker does between POs
                        wall = time.perf_counter() - started
                        rows.append(row_of(number, result, wall, site) | {"egress": egress})
                        if egress == "proxy":  # a worker never reaches them
                            assert site.third_party_hits + site.canary_hits == before
    finally:
        site.stop()
    return rows


def job_for(site: DemoSite, tmp: Path, shape: str) -> JobEnv:
    preset = "demo" if shape == "coupa" else "demo-simple"
    return JobEnv(worker_id=1, output_root=str(tmp / "out"), work_root=str(tmp / "work"),
                  evidence_dir=str(tmp / "evidence"),
                  site=load_preset(preset).with_base_url(site.base_url),
                  nav_timeout_s=30.0, download_timeout_s=30.0)


def task_for(site: DemoSite, number: str) -> Task:
    row = catalog.po_dict(site.base_url, number)
    return Task(key=number, po_number=number, supplier=row["supplier"], url=row["url"],
                amount=Decimal(row["amount"]), batch="bench")


def row_of(number: str, result: TaskResult, wall: float, site: DemoSite) -> dict:
    expected = catalog.expected(number, shape=site.shape)
    got = sorted(f.sha256 for f in result.files if f.source in ("po", "requisition"))
    # A run that did less than the job would show a flattering overhead: refuse it.
    assert (str(result.status), got) == (expected.status, sorted(
        a.sha256 for a in expected.attachments)), f"{number}: {result.message}"
    if site.shape == "coupa":
        wait, ideal = coupa_wait(number, site.latency, site.comments_delay)
    else:
        wait = ideal = site.latency * round_trips(number)
    return {"po": number, "status": str(result.status), "files": len(result.files),
            "wall_s": wall, "site_wait_s": wait, "ideal_wait_s": ideal,
            "overhead_s": wall - wait, "steps": dict(result.steps)}


def report(rows: list[dict], latency: float, shape: str, delay: float) -> dict:
    """The summary of the worker-like runs (through the proxy), with the direct runs'
    median beside it: what the egress proxy costs."""
    direct = [r for r in rows if r["egress"] == "direct"]
    rows = [r for r in rows if r["egress"] == "proxy"]
    print(f"{'PO':10} {'status':10} {'files':>5} {'wall':>6} {'wait':>5} {'ideal':>5} "
          f"{'over':>6}  " + " ".join(f"{s[:8]:>8}" for s in STEPS))
    for r in rows:
        print(f"{r['po']:10} {r['status']:10} {r['files']:5d} {r['wall_s']:6.3f} "
              f"{r['site_wait_s']:5.1f} {r['ideal_wait_s']:5.1f} "
              f"{r['overhead_s'] * 1000:5.0f}ms  "
              + " ".join(f"{r['steps'].get(s, 0.0):8.3f}" for s in STEPS))
    summary = {
        "shape": shape, "comments_delay_s": delay if shape == "coupa" else None,
        "latency_s": latency, "pos": len(rows), "load_average_1m": os.getloadavg()[0],
        "median_s_per_po": statistics.median(r["wall_s"] for r in rows),
        "median_overhead_ms": 1000 * statistics.median(r["overhead_s"] for r in rows),
        "max_overhead_ms": 1000 * max(r["overhead_s"] for r in rows),
        "median_order_cost_ms": 1000 * statistics.median(
            r["site_wait_s"] - r["ideal_wait_s"] for r in rows),
        "median_step_s": {s: statistics.median(r["steps"].get(s, 0.0) for r in rows)
                          for s in STEPS},
        "direct_median_s_per_po": statistics.median(r["wall_s"] for r in direct),
        "direct_median_overhead_ms": 1000 * statistics.median(
            r["overhead_s"] for r in direct),
        "proxy_cost_ms_median": 1000 * statistics.median(
            p["wall_s"] - d["wall_s"] for p, d in zip(rows, direct, strict=True)),
    }
    print(f"\n{shape} shape: median {summary['median_s_per_po']:.3f} s per PO at "
          f"{latency:g} s latency; "
          f"overhead beyond the site's latency: median {summary['median_overhead_ms']:.0f} ms, "
          f"max {summary['max_overhead_ms']:.0f} ms (target <= 300 ms median); "
          f"load average {summary['load_average_1m']:.1f} on {os.cpu_count()} CPUs")
    print(f"without the egress proxy (side by side): median overhead "
          f"{summary['direct_median_overhead_ms']:.0f} ms; the proxy's cost per PO: "
          f"median {summary['proxy_cost_ms_median']:.0f} ms")
    print("median per step (s): " + ", ".join(
        f"{k} {v:.3f}" for k, v in summary["median_step_s"].items()))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=10, help="normal demo POs to add")
    parser.add_argument("--shape", choices=catalog.SHAPES[::-1], default="coupa")
    args = parser.parse_args(argv)
    numbers = [catalog.ONE_PDF, catalog.SEVERAL, catalog.REQUISITION_ONLY]
    if args.shape == "coupa":
        numbers += [catalog.COMMENTS_ONLY, catalog.HEADER_ONLY]
    numbers += [f"PO{catalog.NORMAL_START + i}" for i in range(args.count)]
    rows = bench(args.latency, numbers, args.shape)
    summary = report(rows, args.latency, args.shape, COMMENTS_DELAY)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "processing.json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
