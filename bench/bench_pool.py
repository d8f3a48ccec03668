"""Benchmark the WorkerPool engine against its performance figures (docs/worker_pool.md).

    .venv/bin/python bench/bench_pool.py [--runs 3] [--batch 40] [--latency 1.0]

Runs the demo site in this process and real pools of real Chromium workers; prints
one table (medians over runs; configurations alternate run by run, so a noisy
neighbour hurts all of them alike) and the memory comparison of browser flags.
Figures, not asserts: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pool_core import ProfileManager, WorkerPool
from pool_core.events import Heartbeat, WorkerStarted
from pool_core.process_tree import tree_pss_mb
from pool_core.worker import TAB_IDLE_RELEASE_S


def med(values: Any) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] if ordered else 0.0


def _serve_site(conn: Connection) -> None:
    """Run the demo site in its own process and obey commands from the bench."""
    from poolsite.demo_erp.server import DemoSite

    site = DemoSite().start()
    conn.send(site.base_url)
    while True:
        command, arg = conn.recv()
        if command == "latency":
            site.latency = arg
            conn.send(None)
        elif command == "state":
            conn.send(site.storage_state())
        else:
            site.stop()
            conn.send(None)
            return


class RemoteSite:
    """The demo site in another process, so its threads do not share our GIL (a real
    procurement site is remote too)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve_site, args=(child,), daemon=True)
        self._process.start()
        self.base_url: str = self._conn.recv()

    def _ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._conn.recv()

    @property
    def latency(self) -> float:
        raise AttributeError("write-only")

    @latency.setter
    def latency(self, value: float) -> None:
        self._ask("latency", value)

    def storage_state(self) -> dict[str, Any]:
        return dict(self._ask("state"))

    def stop(self) -> None:
        self._ask("stop")
        self._process.join(10)


class Bench:
    """One demo site, one scratch folder, pools built with the same options."""

    def __init__(self, latency: float) -> None:
        from poolsite.demo_erp import catalog

        self.catalog = catalog
        self.site = RemoteSite()
        self.site.latency = latency
        self.scratch = Path(tempfile.mkdtemp(prefix="bench-pool-"))
        self.batch_no = 0

    def close(self) -> None:
        self.site.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def pool(self, size: int, on_event: Callable[[Any], None] | None = None,
             **options: Any) -> WorkerPool:
        manager = ProfileManager(temp_dir=str(self.scratch),
                                 storage_state=self.site.storage_state())
        return WorkerPool(size, profile_manager=manager, output_root=str(self.scratch / "out"),
                          max_task_timeout=60, on_event=on_event, **options)

    def batch(self, n: int) -> list[dict]:
        self.batch_no += 1
        return self.catalog.demo_batch(self.site.base_url, n, start=200000 + 1000 * self.batch_no)

    def run_batch(self, size: int, n: int, **options: Any) -> dict[str, Any]:
        """Start a pool, process n POs while polling get_status, stop it; return figures."""
        startups: list[float] = []
        heartbeats: list[float] = []
        steps: list[dict[str, float]] = []

        def on_event(event: Any) -> None:
            if isinstance(event, WorkerStarted):
                startups.append(event.startup_seconds)
                steps.append(dict(event.steps))
            elif isinstance(event, Heartbeat):
                heartbeats.append(event.memory_mb)

        pool = self.pool(size, on_event, **options)
        batch = self.batch(n)
        begun = time.monotonic()
        pool.start_processing(batch, batch=f"bench{self.batch_no}")
        running = time.monotonic()
        status_times: list[float] = []
        done = threading.Event()
        poller = threading.Thread(target=_poll_status, args=(pool, status_times, done))
        poller.start()
        finished = pool.wait_until_done(600)
        processed = time.monotonic()
        done.set()
        poller.join()
        successful, failed, perf = pool.get_results()
        pss = [w["memory_mb"] for w in pool.get_status()["worker_details"]]
        stop_begun = time.monotonic()
        clean = pool.stop_processing(30)
        stopped = time.monotonic()
        return {
            "size": size, "finished": finished, "ok": successful, "failed": failed,
            "start_s": running - begun, "process_s": processed - running,
            "total_s": processed - begun, "stop_s": stopped - stop_begun, "clean": clean,
            "startups": startups, "status_ms": [t * 1000 for t in status_times],
            "distribution_ms_p95": perf["distribution_latency_ms_p95"],
            "distribution_ms_p50": perf["distribution_latency_ms_p50"], "pss": pss,
            "pss_busy_max": max(heartbeats, default=0.0), "steps": steps,
        }

    def memory(self, size: int, n: int, **options: Any) -> dict[str, Any]:
        """PSS per worker tree: busy (sampled during n POs) and idle (3 samples each, once
        idle workers have closed their page)."""
        cpu_before = _machine_cpu()
        pool = self.pool(size, None, **options)
        busy: list[float] = []
        done = threading.Event()
        sampler = threading.Thread(target=_sample_busy, args=(pool, busy, done))
        pool.start_processing(self.batch(n))
        sampler.start()
        pool.wait_until_done(300)
        done.set()
        sampler.join()
        time.sleep(TAB_IDLE_RELEASE_S)
        samples: list[float] = []
        for _ in range(3):
            time.sleep(0.5)
            for worker in pool.get_status()["worker_details"]:
                samples.append(tree_pss_mb(worker["pid"]))
        successful, failed, _ = pool.get_results()
        pool.stop_processing(30)
        cpu = _machine_cpu() - cpu_before
        return {"pss_mb": statistics.median(samples), "max_mb": max(samples),
                "busy_mb": statistics.median(busy) if busy else 0.0, "ok": successful,
                "failed": failed, "cpu_per_po": cpu / n}


def _sample_busy(pool: WorkerPool, samples: list[float], done: threading.Event) -> None:
    """PSS of the trees of workers in the middle of a PO, every 0.2 s."""
    while not done.wait(0.2):
        for worker in pool.get_status()["worker_details"]:
            if worker["current_po"] and worker["phase"] not in ("", "assigned"):
                samples.append(tree_pss_mb(worker["pid"]))


def _fork_server() -> psutil.Process | None:
    """The fork server workers of this process are forked from, if it runs."""
    for child in psutil.Process().children():
        if "forkserver" in " ".join(child.cmdline()):
            return child
    return None


def fork_server_pss_mb() -> float:
    """PSS of this process's fork server alone (not part of any worker's tree)."""
    server = _fork_server()
    return server.memory_full_info().pss / (1024 * 1024) if server else 0.0


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy: workers, drivers, browsers, the demo
    site and this bench alike. (Counting reaped children instead misses every renderer
    a zygote forked: the browser does not wait for its zygote, so their time is lost,
    and configurations without a zygote looked ~60% more expensive than they are.)"""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq


def _poll_status(pool: WorkerPool, times: list[float], done: threading.Event) -> None:
    while not done.is_set():
        began = time.perf_counter()
        pool.get_status()
        times.append(time.perf_counter() - began)
        done.wait(0.005)


def run_speed(bench: Bench, runs: int, n: int, sizes: tuple[int, ...],
              latency: float, **options: Any) -> dict[int, list[dict]]:
    results: dict[int, list[dict]] = {size: [] for size in sizes}
    for run in range(runs):
        for size in sizes:  # alternate configurations side by side
            bench.site.latency = latency
            result = bench.run_batch(size, n, **options)
            results[size].append(result)
            print(f"  run {run + 1}/{runs} {size} workers: {result['process_s']:.1f}s "
                  f"(+{result['start_s']:.1f}s start), ok {result['ok']} failed "
                  f"{result['failed']}, stop {result['stop_s']:.2f}s", flush=True)
    return results


def run_memory(bench: Bench, runs: int) -> dict[str, list[dict]]:
    configs: dict[str, dict[str, Any]] = {
        "default: auto (lean as root), node --max-semi-space-size=1 --jitless": {},
        "default, node JIT on (--max-semi-space-size=1)": {
            "node_options": "--max-semi-space-size=1"},
        "default, no NODE_OPTIONS": {"node_options": ""},
        "standard: zygotes, GPU process": {"browser_mode": "standard"},
        "--single-process --no-zygote": {"browser_mode": "single-process"},
    }
    print(f"memory: 4 workers x {len(configs)} configurations", flush=True)
    bench.site.latency = 0.3  # long enough to find workers in the middle of a PO
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for _ in range(runs):
        for name, options in configs.items():
            results[name].append(bench.memory(4, 24, **options))
    return results


def report(speed: dict[int, list[dict]], memory: dict[str, list[dict]], n: int) -> None:
    print("\n| figure | limit | target | measured |\n|---|---|---|---|")
    four = speed.get(4, [])
    if four:
        report_four(four, speed.get(1, []), memory)
    else:  # the start-up, distribution, status, stop and memory rows come from 4 workers
        print("| figures of 4 workers | | | not measured: --sizes has no 4 |")
    base = med(r["process_s"] for r in speed[1]) if 1 in speed else None
    for size in sorted(speed):
        secs = med(r["process_s"] for r in speed[size])
        factor = f"{base / secs:.2f}x" if base else "-"
        target = {4: ">= 3.6x", 8: ">= 6.5x"}.get(size, "")
        print(f"| {n}-PO batch, {size} worker(s): median seconds, speedup | 3-4x at 4+ | "
              f"{target} | {secs:.1f} s, {factor} |")
    if not memory:
        return
    print("\nMemory per worker (PSS of Python + driver + browser, 4 workers: idle after 24 "
          "POs, and busy during them) and CPU per PO (the whole machine, start-up and stop "
          "included):")
    print("| browser configuration | idle MB | max idle MB | busy MB | CPU s/PO "
          "| POs ok/failed |")
    print("|---|---|---|---|---|---|")
    for name, rows in memory.items():
        ok = sum(r["ok"] for r in rows)
        failed = sum(r["failed"] for r in rows)
        print(f"| {name} | {med(r['pss_mb'] for r in rows):.0f} | "
              f"{max(r['max_mb'] for r in rows):.0f} | {med(r['busy_mb'] for r in rows):.0f} | "
              f"{med(r['cpu_per_po'] for r in rows):.2f} | {ok}/{failed} |")


def report_four(four: list[dict], alone_runs: list[dict],
                memory: dict[str, list[dict]]) -> None:
    """The rows measured on the 4-worker runs (and the memory comparison's default)."""
    startups = [s for r in four for s in r["startups"]]
    status_ms = [t for r in four for t in r["status_ms"]]
    print(f"| worker startup p95, 4 starting together | < 15 s | <= 1.5 s | "
          f"{p95(startups):.2f} s (median {med(startups):.2f} s, "
          f"{len(startups)} workers) |")
    steps = [s for r in four for s in r["steps"]]
    if steps:
        names = list(steps[0])
        print("| (for scale) start-up steps, 4 together, median s since spawn | | | "
              + ", ".join(f"{n} {med(s.get(n, 0.0) for s in steps):.2f}"
                          for n in names) + " |")
    alone = [s for r in alone_runs for s in r["startups"]]
    if alone:
        print(f"| (for scale) startup of 1 worker alone, median | | | "
              f"{med(alone):.2f} s |")
    dist = med(r["distribution_ms_p95"] for r in four)
    dist50 = med(r["distribution_ms_p50"] for r in four)
    print(f"| task distribution latency p95 | < 100 ms | <= 10 ms | {dist:.1f} ms "
          f"(p50 {dist50:.1f} ms) |")
    print(f"| get_status() p95 during a run | < 50 ms | <= 1 ms | {p95(status_ms):.3f} ms "
          f"({len(status_ms)} calls) |")
    print(f"| graceful stop, idle workers (4) | < 30 s | <= 2 s | "
          f"{med(r['stop_s'] for r in four):.2f} s |")
    peak = med(r["pss_busy_max"] for r in four)
    default = next(iter(memory.values()), [])
    measured = (f"{med(r['pss_mb'] for r in default):.0f} MB idle (page closed after "
                f"{TAB_IDLE_RELEASE_S:g} s); {med(r['busy_mb'] for r in default):.0f} MB busy "
                "(median); " if default else "idle and busy not measured (--memory-runs 0); ")
    print(f"| PSS per worker incl. browser, 4 workers | < 200 MB | <= 160 MB | {measured}"
          f"{peak:.0f} MB peak heartbeat during the speed runs |")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--sizes", default="1,4,8")
    parser.add_argument("--browser-mode", default="auto",
                        help="WorkerPool browser_mode of the speed runs")
    parser.add_argument("--memory-runs", type=int, default=None,
                        help="runs of the memory comparison (default: --runs; 0 skips it)")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)  # "" : memory only
    bench = Bench(args.latency)
    try:
        print(f"speed: {args.batch} POs at {args.latency}s page latency, sizes {sizes}, "
              f"{args.runs} runs, browser mode {args.browser_mode}; cpu count "
              f"{os.cpu_count()}", flush=True)
        speed = run_speed(bench, args.runs, args.batch, sizes, args.latency,
                          browser_mode=args.browser_mode)
        memory_runs = args.runs if args.memory_runs is None else args.memory_runs
        memory = run_memory(bench, memory_runs) if memory_runs else {}
        report(speed, memory, args.batch)
        print(f"\nThe fork server workers are forked from (one per host process): "
              f"{fork_server_pss_mb():.0f} MB PSS")
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
