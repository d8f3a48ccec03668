"""The preview's validated rows, kept server-side until the operator confirms.

Reading a workbook is the expensive part of an upload (openpyxl, up to the parse
budget in upload_read). The preview has already done it; the confirm step takes the
rows kept here instead of parsing the file a second time. They are kept in
DATA_DIR/upload-previews/<sha256>.json (owner-only) for a day, keyed by the file's
sha256 and the options it was read with; anything missing or different means a fresh
parse of the staged file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from poolsite.batches.batch_import import ParsedRow, Upload, site_presets

log = logging.getLogger(__name__)
FORMAT = 1
STALE_SECONDS = 24 * 3600
# Fields of an Upload that are not plain JSON values: stored their own way.
_SPECIAL = ("preset", "rows", "problems", "problem_count")


def previews_dir() -> Path:
    folder = Path(settings.DATA_DIR) / "upload-previews"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def parsed_path(sha256: str) -> Path:
    return previews_dir() / f"{sha256}.json"


def keep(upload: Upload, *, sheet: str) -> None:
    """Write a validated upload's rows for its confirm step (and drop day-old ones)."""
    if not upload.ok:
        return
    cutoff = time.time() - STALE_SECONDS
    for old in previews_dir().iterdir():
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    data: dict[str, Any] = {
        "format": FORMAT, "requested_sheet": sheet, "preset": upload.preset.name,
        **{f.name: getattr(upload, f.name) for f in dataclasses.fields(Upload)
           if f.name not in _SPECIAL},
        "rows": [dataclasses.asdict(row) for row in upload.rows],
    }
    path = parsed_path(upload.sha256)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, default=_decimal)
    os.replace(tmp, path)


def take(sha256: str, *, preset: str, sheet: str) -> Upload | None:
    """The upload kept for this file and these options, or None (then parse again)."""
    path = parsed_path(sha256)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("format") != FORMAT
            or data.get("sha256") != sha256 or data.get("preset") != preset
            or data.get("requested_sheet") != sheet):
        return None
    site = site_presets().get(preset)
    if site is None:
        return None
    try:
        plain = {f.name: data[f.name] for f in dataclasses.fields(Upload)
                 if f.name not in _SPECIAL and f.name in data}
        rows = [ParsedRow(**{**row, "amount": _amount(row.get("amount"))})
                for row in data["rows"]]
        return Upload(preset=site, rows=rows, **plain)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.warning("the kept preview of %s is unreadable (%s): parsing again", sha256, exc)
        return None


def forget(sha256: str) -> None:
    parsed_path(sha256).unlink(missing_ok=True)


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot keep a {type(value).__name__}")


def _amount(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
