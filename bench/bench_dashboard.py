"""Dashboard figures: snapshot cost for a 10,000-PO batch, event → DOM latency under load.

    dashboard_preview (daphne, temp SQLite, FakeEngine with 8 busy workers)
        └─ Broadcaster ─▶ group "pool" ─▶ N WebSockets ─▶ N Chromium pages
    each page records Date.now() - pool.sent_at per applied update
    (sent_at = the OLDEST event waiting in the coalescing window, so nothing is flattered)

Prints figures; asserts nothing. Targets from issue 7: p95 ≤ 250 ms with 8 workers busy
and 20 dashboards, snapshot of a 10,000-PO batch rendered in ≤ 1 s.

    .venv/bin/python bench/bench_dashboard.py [--pos 10000] [--dashboards 20]
        [--seconds 30] [--rate 40]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int, args: argparse.Namespace) -> tuple[
        subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(POOL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", POOL_LOG_LEVEL="WARNING")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=env, check=True, timeout=180, stdin=subprocess.DEVNULL)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "dashboard_preview", "--port", str(port), "--seed",
         "--pos", str(args.pos), "--workers", "8", "--fake-rate", str(args.rate),
         "--user", f"viewers:bench:{PASSWORD}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    sessions: dict[str, str] = {}
    deadline = time.monotonic() + 300  # seeding 10,000 POs takes a while on SQLite
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line.startswith("session "):
            _, name, key = line.split()
            sessions[name] = key
        if line.startswith("ready "):
            return proc, sessions


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def time_page(url: str, session: str, rounds: int) -> list[float]:
    """Seconds to fetch the server-rendered dashboard (snapshot + template), whole body."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.addheaders = [("Cookie", f"sessionid={session}")]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with opener.open(url, timeout=30) as response:
            body = response.read()
        times.append(time.perf_counter() - started)
        assert b'id="dashboard-snapshot"' in body, "not the dashboard (signed out?)"
    return times


RAW_SOCKETS_JS = """([count, seconds]) => new Promise((resolve) => {
    const latencies = [];
    const sockets = [];
    for (let i = 0; i < count; i++) {
        const ws = new WebSocket(`ws://${location.host}/ws/pool/`);
        ws.onmessage = (event) => {
            const message = JSON.parse(event.data);
            const sent = message.kind === "update" && message.pool && message.pool.sent_at;
            if (typeof sent === "number") latencies.push(Date.now() - sent);
        };
        sockets.push(ws);
    }
    setTimeout(() => { sockets.forEach((ws) => ws.close()); resolve(latencies); },
               seconds * 1000);
})"""


def measure(url: str, session: str, args: argparse.Namespace,
            server: psutil.Process) -> dict[str, Any]:
    """Delivery to raw sockets (no rendering), then full dashboards (DOM updates)."""
    from playwright.sync_api import sync_playwright

    from pool_core.browser import find_browser, launch_args

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_browser(
            os.environ.get("POOL_BROWSER_PATH") or None),
            args=[*launch_args(), *args.browser_arg])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session, "url": url}])
            probe = context.new_page()
            probe.goto(f"{url}healthz")
            raw = probe.evaluate(RAW_SOCKETS_JS, [args.dashboards, args.seconds])
            probe.close()
            result = measure_dashboards(context, url, args, server)
        finally:
            browser.close()
    return {**result, "raw": raw}


def measure_dashboards(context: Any, url: str, args: argparse.Namespace,
                       server: psutil.Process) -> dict[str, Any]:
    pages = []
    load_times = []
    for _ in range(args.dashboards):
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector('#dashboard[data-connection="live"]', timeout=60_000)
        load_times.append(time.perf_counter() - started)
        pages.append(page)
    time.sleep(2)  # let the last pages settle
    for page in pages:  # forget what arrived while the others were opening
        page.evaluate("window.poolDashboard.latencies.length = 0")
    cpu_before = cpu_seconds(browser_processes()), cpu_seconds([server])
    wall = time.monotonic()
    time.sleep(args.seconds)
    wall = time.monotonic() - wall
    cpu_after = cpu_seconds(browser_processes()), cpu_seconds([server])
    per_page = [page.evaluate("window.poolDashboard.latencies.slice()") for page in pages]
    return {"per_page": per_page, "load": load_times, "wall": wall,
            "browser_cpu": cpu_after[0] - cpu_before[0],
            "server_cpu": cpu_after[1] - cpu_before[1]}


def browser_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pos", type=int, default=10_000)
    parser.add_argument("--dashboards", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=40.0,
                        help="engine events per second (8 busy workers)")
    parser.add_argument("--page-rounds", type=int, default=10)
    parser.add_argument("--browser-arg", action="append", default=[],
                        help="extra Chromium flag for the dashboards' browser")
    args, _ = parser.parse_known_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        started = time.monotonic()
        proc, sessions = start_server(Path(tmp), port, args)
        print(f"server ready with a {args.pos}-PO batch after "
              f"{time.monotonic() - started:.1f} s (seeding included)")
        try:
            pages = time_page(url, sessions["bench"], args.page_rounds)
            print(f"dashboard page, {args.pos}-PO batch ({args.page_rounds} GETs, snapshot + "
                  f"template, whole body): median {statistics.median(pages) * 1000:.0f} ms, "
                  f"max {max(pages) * 1000:.0f} ms  (target ≤ 1000 ms)")
            result = measure(url, sessions["bench"], args, psutil.Process(proc.pid))
        finally:
            stop_server(proc)

    raw = result["raw"]
    if raw:
        print(f"delivery to {args.dashboards} raw WebSockets (server fan-out + network, no "
              f"rendering), {len(raw)} updates: p50 {percentile(raw, .50):.0f} ms  p95 "
              f"{percentile(raw, .95):.0f} ms  max {max(raw):.0f} ms")
    loads = result["load"]
    print(f"{args.dashboards} dashboards opened; page → live: median "
          f"{statistics.median(loads) * 1000:.0f} ms, max {max(loads) * 1000:.0f} ms")
    latencies = [ms for page in result["per_page"] for ms in page]
    counts = [len(page) for page in result["per_page"]]
    if not latencies:
        print("no updates were applied: nothing to report")
        return 1
    print(f"event → DOM latency over {args.seconds:.0f} s, 8 workers busy, {args.rate:.0f} "
          f"engine events/s, {args.dashboards} dashboards: {len(latencies)} updates applied "
          f"({min(counts)}-{max(counts)} per page)")
    print(f"  p50 {percentile(latencies, .50):.0f} ms  p95 {percentile(latencies, .95):.0f} ms"
          f"  p99 {percentile(latencies, .99):.0f} ms  max {max(latencies):.0f} ms"
          f"  (target p95 ≤ 250 ms)")
    # CPU, not wall time: on a shared machine these hold whatever else is running.
    wall = result["wall"]
    print(f"  CPU: server {result['server_cpu'] / wall * 100:.0f}% of a core; browser "
          f"{result['browser_cpu'] / wall * 100:.0f}% of a core = "
          f"{result['browser_cpu'] * 1000 / len(latencies):.1f} ms per applied update; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
