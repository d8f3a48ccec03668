"""What the runners share: their command line, the batch file, file names and the report."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

PAGE_PDF = "_page.pdf"
ATTACHMENT_SELECTOR = "a[href*='attachment']"
# Every Playwright call gets a timeout, so a hung page fails instead of stalling a run.
STEP_TIMEOUT_MS = 30_000


@dataclass
class POReport:
    """What one runner says it did with one PO (the harness checks the disk itself)."""

    po_number: str
    status: str  # "ok" | "failed"
    files: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


def runner_arguments(description: str) -> argparse.Namespace:
    """Parse the command line every runner accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=Path, required=True, help="JSON list of PO dicts")
    parser.add_argument("--out", type=Path, required=True, help="output root")
    parser.add_argument("--report", type=Path, required=True, help="JSON report to write")
    parser.add_argument("--storage-state", type=Path, required=True,
                        help="Playwright storage state holding the demo session cookie")
    parser.add_argument("--browser", required=True, help="Chromium executable")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--parallel-downloads", action="store_true",
                        help="start all of a PO's downloads at once (crawlee runner only)")
    return parser.parse_args()


def batch_load(path: Path) -> list[dict[str, Any]]:
    """Read a batch written by `batch_dump`; amounts come back as Decimal."""
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    for row in rows:
        row["amount"] = Decimal(row["amount"])
    return rows


def batch_dump(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps([{**row, "amount": str(row["amount"])} for row in rows]))


def safe_name(name: str) -> str:
    """Turn a server-suggested file name into one plain, bounded file name."""
    cleaned = re.sub(r"[^\w.\- ]", "_", name.replace("\\", "/").split("/")[-1]).strip(". ")
    return (cleaned or "attachment")[:150]


def po_folder(out_root: Path, po_number: str) -> Path:
    folder = out_root / safe_name(po_number)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def file_check(path: Path) -> dict[str, Any]:
    """Return name, size and sha256 of a downloaded file; raise if it is empty or HTML."""
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path.name}: empty download")
    if data.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        raise ValueError(f"{path.name}: an HTML page, not a document")
    return {"name": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def report_write(path: Path, reports: list[POReport], started: float, **extra: Any) -> None:
    """Write the runner's JSON report (per-PO results and its own job time)."""
    payload = {"job_seconds": time.monotonic() - started,
               "pos": [asdict(r) for r in reports], **extra}
    path.write_text(json.dumps(payload, indent=1))
