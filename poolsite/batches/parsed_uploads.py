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

from poolsite.batches.batch_import import ParsedRow, Upload
from poolsite.batches.models import Site

log = logging.getLogger(__name__)
FORMAT = 1
STALE_SECONDS = 24 * 3600
# Fields of an Upload that are not plain JSON values: stored their own way.
_SPECIAL = ("preset", "rows", "problems", "problem_count", "site", "data", "hosts")


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
        "site": _site_key(upload.site),
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


def take(sha256: str, *, site: Site, sheet: str, data: bytes) -> Upload | None:
    """The upload kept for this file, site and sheet, or None (then parse again).

    `data` is the staged file itself, which the batch keeps; the site must be as it was
    at the preview (its address and hosts decide which URLs are allowed).
    """
    path = parsed_path(sha256)
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(kept, dict) or kept.get("format") != FORMAT
            or kept.get("sha256") != sha256 or kept.get("site") != _site_key(site)
            or kept.get("requested_sheet") != sheet):
        return None
    try:
        rules = site.tenant_preset()
    except KeyError:
        return None
    try:
        plain = {f.name: kept[f.name] for f in dataclasses.fields(Upload)
                 if f.name not in _SPECIAL and f.name in kept}
        rows = [ParsedRow(**{**row, "amount": _amount(row.get("amount"))})
                for row in kept["rows"]]
        return Upload(preset=rules, rows=rows, site=site, data=data, **plain)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        log.warning("the kept preview of %s is unreadable (%s): parsing again", sha256, exc)
        return None


def _site_key(site: Site | None) -> str:
    """The site as it decides which URLs are allowed: a changed site means a fresh parse."""
    if site is None:
        return ""
    return json.dumps([site.pk, site.preset, site.base_url, sorted(site.extra_hosts or [])])


def forget(sha256: str) -> None:
    parsed_path(sha256).unlink(missing_ok=True)


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot keep a {type(value).__name__}")


def _amount(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)
