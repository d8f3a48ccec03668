"""Compare poolsite with what a user would pick instead, side by side on one machine.

    .venv/bin/python bench/compare.py --systems sequential,crawlee,pool1,pool4,pool8 \
        --rounds 3 --batch 40 --latency 1.0 [--shape simple] [--no-specials]

One demo site (in this process) serves the same batch to every system, in the "coupa"
page shape by default (header spans under a floating bar, comments rendered after
`load`, requisitions, third-party scripts on other loopback hosts): the batch is the
coupa specials whose ground truth is a success and that answer alike on every visit
(`BENCH_SPECIALS`), then normal POs up to --batch. `--shape simple` is the older
comparison on plain links, normal POs only. Each system
runs as a child process (bench/alternatives/); the harness samples the PSS of the
child's whole process tree, verifies the files on disk against the site's ground
truth, and alternates the systems round by round (A B C, C B A, ...) so drift in the
machine's load falls on all of them. Ratios are medians of per-round ratios. A last
pass per system SIGKILLs one browser mid-run and records what became of the batch.
Prints a table; writes bench/results/compare.json and bench/results/compare.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: `python bench/compare.py`
    sys.path.insert(0, str(REPO))

from bench.alternatives.po_files import batch_dump  # noqa: E402
from bench.comparison import report  # noqa: E402
from bench.comparison.measure import MB, ChildRun, child_run  # noqa: E402
from bench.comparison.verify import outputs_verify  # noqa: E402
from pool_core.browser import find_browser  # noqa: E402
from poolsite.demo_erp import catalog  # noqa: E402
from poolsite.demo_erp.server import DemoSite  # noqa: E402

RESULTS = REPO / "bench" / "results"
CRAWLEE_DEFAULT_CONCURRENCY = 4
# Coupa specials in the timed batch: each ends as a success (COMPLETED, or
# NO_ATTACHMENTS with its page PDF), so "done" can be checked on disk, and each answers
# the same on every visit. Left out: the POs that should fail (not found, denied, 500,
# redirect out, comments that never render: nothing to verify), RATE_LIMITED and
# STALL_ONCE (they depend on the site's hit count, so on which system ran first) and
# SUBREQUEST_OUT (its image is on the canary host, which no system should reach).
BENCH_SPECIALS = (
    catalog.ONE_PDF, catalog.SEVERAL, catalog.REQUISITION_ONLY, catalog.NO_ATTACHMENTS,
    catalog.HOSTILE_NAMES, catalog.COMMENTS_ONLY, catalog.HEADER_ONLY, catalog.TYPE_MISMATCH,
)


@dataclass(frozen=True)
class System:
    """One contender: its name in the table, the runner module, its concurrency."""

    name: str
    module: str
    concurrency: int
    extra_args: tuple[str, ...] = ()


def system_parse(name: str) -> System:
    """`sequential`, `crawlee` (4 pages), `crawleeN`, `crawlee[N]-pd`, `poolN` -> System.

    `-pd`: Crawlee starts a PO's downloads all at once, as poolsite does, instead of
    one after another as the sequential script does.
    """
    if name == "sequential":
        return System(name, "bench.alternatives.sequential", 1)
    match = re.fullmatch(r"(crawlee|pool)(\d*)(-pd)?", name)
    if match is None:
        raise argparse.ArgumentTypeError(f"unknown system {name!r}")
    kind, digits, parallel = match.groups()
    if kind == "pool" and (not digits or parallel):
        raise argparse.ArgumentTypeError("say how many workers: pool1, pool4, pool8")
    concurrency = int(digits) if digits else CRAWLEE_DEFAULT_CONCURRENCY
    module = "bench.alternatives." + ("crawlee_crawler" if kind == "crawlee" else "workerpool")
    return System(name, module, concurrency, ("--parallel-downloads",) if parallel else ())


def system_missing(system: System) -> str:
    """Why a system cannot run here, or '' when it can."""
    if system.module.endswith("workerpool"):
        import pool_core

        if not hasattr(pool_core, "WorkerPool"):
            return "pool_core has no WorkerPool"
    if system.module.endswith("crawlee_crawler"):
        try:
            import crawlee  # noqa: F401
        except ImportError:
            return "crawlee is not installed: .venv/bin/pip install -e '.[dev,bench]'"
    return ""


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="sequential,crawlee,pool1,pool4,pool8",
                        help="comma-separated: sequential, crawlee[N], poolN")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=40, help="POs per run")
    parser.add_argument("--latency", type=float, default=1.0, help="demo site seconds per request")
    parser.add_argument("--shape", choices=catalog.SHAPES[::-1], default="coupa",
                        help="the demo site's page shape (simple: the older comparison)")
    parser.add_argument("--no-specials", dest="specials", action="store_false",
                        help="coupa shape: normal POs only, no BENCH_SPECIALS")
    parser.add_argument("--comments-delay", type=float, default=None,
                        help="coupa shape: seconds the comments API takes (site default)")
    parser.add_argument("--kill-after", type=int, default=None,
                        help="PO pages served before the kill test kills a browser (batch/3)")
    parser.add_argument("--no-kill-test", dest="kill_test", action="store_false")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where JSON and PNG go")
    parser.add_argument("--keep", action="store_true", help="keep each run's files and log")
    parser.add_argument("--replot", type=Path, metavar="JSON",
                        help="measure nothing: redo the table and chart from a compare.json")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more (the table compares timed rounds); "
                     "--no-kill-test skips the kill test instead")
    args.systems = [system_parse(n.strip()) for n in args.systems.split(",") if n.strip()]
    if args.kill_after is None:
        args.kill_after = max(1, args.batch // 3)
    return args


def run_one(system: System, *, site: DemoSite, batch: list[dict[str, Any]], work: Path,
            args: argparse.Namespace, round_no: int, kill: bool) -> dict[str, Any]:
    """Run one system once on the batch; return its measured and verified figures."""
    run_dir = work / f"{system.name}-{'kill' if kill else f'r{round_no}'}"
    run_dir.mkdir()
    batch_dump(batch, run_dir / "batch.json")
    (run_dir / "state.json").write_text(json.dumps(site.storage_state()))
    cmd = [sys.executable, "-m", system.module, "--batch", str(run_dir / "batch.json"),
           "--out", str(run_dir / "out"), "--report", str(run_dir / "report.json"),
           "--storage-state", str(run_dir / "state.json"), "--browser", args.browser,
           "--concurrency", str(system.concurrency), "--shape", args.shape,
           *system.extra_args]
    pages_before, files_before = po_pages(site), site.hits("/attachment")
    outside_before = site.third_party_hits, site.canary_hits

    def kill_now() -> bool:
        return po_pages(site) - pages_before >= args.kill_after

    child = child_run(cmd, cwd=REPO, log=run_dir / "log.txt", timeout=args.run_timeout,
                      kill_when=kill_now if kill else None)
    record = {
        "system": system.name, "concurrency": system.concurrency, "round": round_no,
        "kill_test": kill,
        "page_hits": po_pages(site) - pages_before,
        "attachment_hits": site.hits("/attachment") - files_before,
        # Analytics and monitoring (loopback stand-ins): a user's script loads them as
        # the page asks; poolsite must never reach them, nor the canary.
        "third_party_hits": site.third_party_hits - outside_before[0],
        "canary_hits": site.canary_hits - outside_before[1],
        **figures_of(child, system.concurrency),
        **outputs_of(run_dir, batch, args.shape),
        "log_tail": log_tail(run_dir / "log.txt") if child.exit_code or kill else "",
    }
    record["pos_per_min"] = 60.0 * record["pos_ok"] / child.wall_seconds
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


def po_pages(site: DemoSite) -> int:
    """PO pages served so far (roughly: what the kill test counts).

    A coupa PO page fetches its comments under the same prefix
    (`/order_headers/<id>/comments.json`), so there it is half the hits.
    """
    hits = site.hits("/order_headers/")
    return hits // 2 if site.shape == "coupa" else hits


def figures_of(child: ChildRun, concurrency: int) -> dict[str, Any]:
    """What the harness measured from outside: time, memory, browsers, the kill."""
    return {
        "wall_s": child.wall_seconds, "exit_code": child.exit_code,
        "timed_out": child.timed_out,
        "pss_peak_mb": child.pss_peak / MB, "pss_median_mb": child.pss_median / MB,
        "pss_peak_per_unit_mb": child.pss_peak / MB / concurrency,
        "pss_median_per_unit_mb": child.pss_median / MB / concurrency,
        "pss_samples": len(child.pss_samples),
        "browsers_seen": len(child.browsers_seen), "killed_browser": child.killed_browser,
        "killed_at_s": child.killed_at_seconds,
        "browser_relaunched": bool(child.browsers_after_kill),
        "strays_killed": child.strays_killed, "strays": child.strays,
        "late_exits": child.late_exits,
    }


def outputs_of(run_dir: Path, batch: list[dict[str, Any]], shape: str) -> dict[str, Any]:
    """What is on disk (verified against the ground truth) and what the runner reported."""
    verified = outputs_verify(run_dir / "out", [po["po_number"] for po in batch], shape)
    runner = report_read(run_dir / "report.json")
    return {
        "pos_total": verified.pos_total, "pos_ok": verified.pos_ok,
        "files_expected": verified.files_expected, "files_ok": verified.files_ok,
        "page_pdfs": verified.page_pdfs, "job_s": runner.get("job_seconds"),
        "reported_failed": sum(1 for p in runner.get("pos", []) if p["status"] != "ok"),
        "pos_retried": retried_count(runner),
        "runner": {k: v for k, v in runner.items() if k not in ("pos", "job_seconds")},
    }


def retried_count(runner: dict[str, Any]) -> int:
    """POs the runner tried more than once (pool: attempts; Crawlee: retry histogram)."""
    if "attempts" in runner:
        return len(runner["attempts"])
    return sum(runner.get("retries", [])[1:])


def report_read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # the runner died before writing it
    return data


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def progress_line(record: dict[str, Any]) -> str:
    what = "kill test" if record["kill_test"] else f"round {record['round'] + 1}"
    return (f"{what:>9} {record['system']:<11} {record['wall_s']:6.1f} s "
            f"{record['pos_per_min']:6.1f} POs/min  peak PSS {record['pss_peak_mb']:5.0f} MB  "
            f"{record['pos_ok']}/{record['pos_total']} POs, "
            f"{record['files_ok']}/{record['files_expected']} files verified"
            + (f"  exit {record['exit_code']}" if record["exit_code"] else "")
            + (f"  {record['strays_killed']} left behind" if record["strays_killed"] else ""))


def rounds_run(systems: list[System], site: DemoSite, batch: list[dict[str, Any]],
               work: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]],
                                                             dict[str, dict[str, Any]]]:
    """The timed rounds, alternating the order, then one kill test per system."""
    timed = []
    for round_no in range(args.rounds):
        order = systems if round_no % 2 == 0 else systems[::-1]
        for system in order:
            timed.append(run_one(system, site=site, batch=batch, work=work, args=args,
                                 round_no=round_no, kill=False))
            print(progress_line(timed[-1]), flush=True)
    kills = {}
    for system in systems if args.kill_test else []:
        kills[system.name] = run_one(system, site=site, batch=batch, work=work, args=args,
                                     round_no=args.rounds, kill=True)
        print(progress_line(kills[system.name]), flush=True)
    return timed, kills


def baselines_for(system: System, systems: list[System]) -> dict[str, str]:
    """Ratios go to the sequential script and to Crawlee at the same concurrency."""
    bases = {"seq": "sequential"}
    for other in systems:
        if other.module.endswith("crawlee_crawler") and other.concurrency == system.concurrency:
            bases["crawlee_pd" if other.extra_args else "crawlee"] = other.name
    return bases


def code_version() -> str:
    """HEAD's short hash, plus the engine/bench files changed but not committed."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pool_core", "bench"],
                               cwd=REPO, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty.splitlines()]
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")


def results_write(args: argparse.Namespace, conditions: dict[str, Any],
                  timed: list[dict[str, Any]], kills: dict[str, dict[str, Any]]) -> None:
    """Print the table; write compare.json and compare.png."""
    systems = [system_parse(name) for name in conditions["systems"]]
    summaries = [report.system_summary(s.name, timed, kills.get(s.name),
                                       baselines_for(s, systems)) for s in systems]
    print()
    print(report.table_format(summaries, conditions))
    report.json_write(args.out / "compare.json", {"conditions": conditions,
                                                   "summary": summaries, "runs": timed,
                                                   "kill_tests": list(kills.values())})
    report.chart_write(args.out / "compare.png", summaries, conditions)
    print(f"\nwrote {args.out / 'compare.json'} and {args.out / 'compare.png'}")


def batch_of(site: DemoSite, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The POs every system gets: (coupa) the bench specials first, then normal POs."""
    specials = list(BENCH_SPECIALS[:args.batch]) if (
        args.shape == "coupa" and args.specials) else []
    normal = catalog.demo_batch(site.base_url, args.batch - len(specials))
    return [catalog.po_dict(site.base_url, n) for n in specials] + normal


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if args.replot:
        saved = json.loads(args.replot.read_text())
        kills = {run["system"]: run for run in saved["kill_tests"]}
        results_write(args, saved["conditions"], saved["runs"], kills)
        return 0
    args.browser = find_browser(os.environ.get("POOL_BROWSER_PATH") or None)
    systems = []
    for system in args.systems:
        missing = system_missing(system)
        if missing:
            print(f"skipped {system.name}: {missing}", flush=True)
        else:
            systems.append(system)
    if not systems:
        return 1
    load_before = os.getloadavg()[0]
    code_before = code_version()
    extra = {} if args.comments_delay is None else {"comments_delay": args.comments_delay}
    site = DemoSite(shape=args.shape, latency=args.latency, **extra).start()
    try:
        batch = batch_of(site, args)
        work = Path(tempfile.mkdtemp(prefix="poolsite-bench-"))
        timed, kills = rounds_run(systems, site, batch, work, args)
    finally:
        site.stop()
    if args.keep:
        print(f"kept every run's files and log under {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    conditions = {
        "shape": args.shape, "comments_delay": site.comments_delay if args.shape == "coupa"
        else None, "specials": [po["po_number"] for po in batch
                                if po["po_number"] in BENCH_SPECIALS],
        "batch": args.batch, "latency": args.latency, "rounds": args.rounds,
        "systems": [s.name for s in systems], "kill_after": args.kill_after,
        "files_per_round": sum(
            len(catalog.expected(po["po_number"], shape=args.shape).attachments)
            for po in batch),
        "cpus": os.cpu_count(), "load_before": load_before,
        "load_after": os.getloadavg()[0], "browser": args.browser,
        "skipped": [s.name for s in args.systems if s not in systems],
        # Others commit to pool_core while a long run goes on: say what was measured.
        "code_before": code_before, "code_after": code_version(),
    }
    results_write(args, conditions, timed, kills)
    return 0


if __name__ == "__main__":
    sys.exit(main())
