"""Time `batch_import` of 10,000 PO rows (CSV and XLSX) into a throwaway SQLite DB.

Prints the median and spread of several runs per format; the target is <= 3 s each.
A figure, never an assert: run it as `.venv/bin/python bench/bench_import.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPLIERS = ("Acme Office Supply", "Globex Industrial GmbH", "Initech Services, Inc.",
             "Umbrella Labs / R&D", "Soylent Foods S.A.", "Stark Components Ltd.")


def sample_rows(n: int) -> list[dict[str, object]]:
    return [{
        "PO Number": f"PO{200000 + i}",
        "Supplier": SUPPLIERS[i % len(SUPPLIERS)],
        "Amount": Decimal(1000 + i) / 100,
        "URL": f"http://127.0.0.1:8001/order_headers/{200000 + i}",
        "Cost Center": f"CC-{i % 40:03d}",
        "Region": ("EMEA", "AMER", "APAC")[i % 3],
    } for i in range(n)]


def as_csv(rows: list[dict[str, object]]) -> bytes:
    from poolsite.batches.batch_import import rows_to_csv

    return rows_to_csv(rows)


def as_xlsx(rows: list[dict[str, object]], *, write_only: bool = False) -> bytes:
    """Excel-like (shared strings, dimension) or openpyxl write-only (inline strings)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=write_only)
    sheet = workbook.create_sheet("POs") if write_only else workbook.active
    assert sheet is not None
    sheet.append(list(rows[0]))
    for row in rows:
        sheet.append([float(v) if isinstance(v, Decimal) else v for v in row.values()])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def time_import(data: bytes, filename: str, runs: int) -> tuple[list[float], list[float]]:
    """Return wall-clock and CPU seconds per run (CPU time is steadier on a shared host)."""
    from poolsite.batches.batch_import import batch_import
    from poolsite.batches.models import Batch

    seconds, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        batch = batch_import(data, filename=filename, preset="demo")
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        Batch.objects.filter(pk=batch.pk).delete()
    return seconds, cpu


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        os.environ["POOL_DATA_DIR"] = tmp
        os.environ.pop("DATABASE_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolsite.settings")
        os.environ["POOL_MAX_ROWS"] = str(max(args.rows, 20_000))
        sys.path.insert(0, str(ROOT))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        rows = sample_rows(args.rows)
        files = {"csv": as_csv(rows), "xlsx": as_xlsx(rows),
                 "xlsx (inline strings)": as_xlsx(rows, write_only=True)}
        print(f"batch_import of {args.rows:,} rows, {args.runs} runs each, SQLite (WAL), "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        for kind, data in files.items():
            seconds, cpu = time_import(data, f"bench.{kind.split()[0]}", args.runs)
            print(f"  {kind:<22} {len(data) / 1024:6.0f} KiB  "
                  f"median {statistics.median(seconds):.2f} s  "
                  f"min {min(seconds):.2f} s  max {max(seconds):.2f} s  "
                  f"(CPU median {statistics.median(cpu):.2f} s)")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
