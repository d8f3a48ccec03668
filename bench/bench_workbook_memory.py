"""Memory of parsing an upload: the serving process's RSS before, at peak and after.

    .venv/bin/python bench/bench_workbook_memory.py [--runs 3]

Each measurement runs in a fresh interpreter (the web process's imports loaded first)
that parses one file with the upload reader, as the preview does, then lets the table
go. Two workbooks: 10,000 PO rows, and one whose shared-strings table is just under the
budget (the most expensive workbook the reader accepts). Each is parsed as the product
does (memory handed back to the system afterwards: `release_memory`) and, side by side,
with that step switched off, to show what it returns. Prints medians; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024


def build_workbooks(folder: Path) -> dict[str, Path]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolsite.settings")
    django.setup()
    from bench.bench_import import as_xlsx, sample_rows
    from poolsite.batches.upload_read import MAX_XLSX_SHARED_STRINGS
    from tests.security.test_workbook_budget import expensive_workbook

    books = {"10k rows": as_xlsx(sample_rows(10_000)),
             "strings at budget": expensive_workbook(MAX_XLSX_SHARED_STRINGS - 512 * 1024)}
    paths = {}
    for name, data in books.items():
        path = folder / (name.replace(" ", "-") + ".xlsx")
        path.write_bytes(data)
        paths[name] = path
    return paths


def child(path: str, release: bool) -> None:
    """Parse `path` once; print baseline, peak and after RSS (MiB) as JSON."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolsite.settings")
    django.setup()
    import gc

    import psutil

    from poolsite.batches import upload_read

    if not release:
        upload_read.release_memory = lambda: None
    data = Path(path).read_bytes()
    me = psutil.Process()
    gc.collect()
    baseline = me.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    table = upload_read.read_table(data, Path(path).name, max_rows=100_000,
                                   max_bytes=64 * MIB)
    rows = len(table.rows)
    del table
    upload_read.release_memory()  # the product calls it inside read_table; again is free
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    after = me.memory_info().rss
    print(json.dumps({"rows": rows, "seconds": seconds, "baseline": baseline / MIB,
                      "peak": peak / MIB, "after": after / MIB}))


def measure(path: Path, release: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path),
                          "--release" if release else "--keep"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--release", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.release)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-workbook-") as tmp:
        books = build_workbooks(Path(tmp))
        print(f"{'workbook':20} {'mode':9} {'file MB':>7} {'parse s':>7} {'peak +MiB':>9} "
              f"{'after +MiB':>10}")
        for name, path in books.items():
            for release in (True, False):
                runs = [measure(path, release) for _ in range(args.runs)]
                print(f"{name:20} {'released' if release else 'kept':9} "
                      f"{path.stat().st_size / 1e6:7.1f} "
                      f"{statistics.median(r['seconds'] for r in runs):7.2f} "
                      f"{statistics.median(r['peak'] - r['baseline'] for r in runs):9.0f} "
                      f"{statistics.median(r['after'] - r['baseline'] for r in runs):10.0f}")
    print(f"medians of {args.runs} runs each; RSS growth over the interpreter's baseline; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
