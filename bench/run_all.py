"""Run every benchmark script in bench/ (each prints its own figures); `make bench`.

A script is a top-level bench/*.py other than this one and `__init__.py`; packages
(bench/alternatives, bench/comparison) are their parts. Arguments after `--` go to
every script, e.g. `bench/run_all.py -- --rounds 1`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if p.name not in ("run_all.py", "__init__.py"))


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    failed = []
    for script in scripts():
        print(f"== {script.relative_to(BENCH.parent)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(script), *extra], cwd=BENCH.parent)
        print(f"== {script.name}: exit {code} after {time.monotonic() - started:.0f} s\n",
              flush=True)
        if code:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
