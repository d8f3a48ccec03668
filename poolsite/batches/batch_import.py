"""Turn an uploaded file into a Batch of POs: validate everything, then store it whole.

    parse_upload(data, filename=..., site=Site | preset=...) -> Upload   (rows + problems; no DB)
    batch_create(upload, name=..., uploaded_by=...) -> Batch  (one transaction)
    batch_import(data, filename=..., ...) -> Batch            (both; ImportRefused on problems)
    batch_import_rows([{po_number, supplier, url, amount, ...}], ...) -> Batch

A batch is created whole or not at all: every problem is listed with its row, column
and value before anything touches the database. Only po_number is required; without a
supplier column the worker reads the supplier from the PO page, and without an amount
column the POs have none. The file itself is kept with the batch (BatchSource) for the
results workbook.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from pool_core.sites import SitePreset
from poolsite.batches.models import (
    Batch,
    BatchSource,
    PurchaseOrder,
    Site,
    Status,
)
from poolsite.batches.site_rules import site_presets
from poolsite.batches.upload_read import (
    ImportRefused,
    Problem,
    Progress,
    read_table,
)
from poolsite.batches.upload_rows import (
    ParsedRow,
    Upload,
    parse_amount,
    read_layout,
    validate_rows,
)

__all__ = [
    "ImportRefused", "ParsedRow", "Problem", "Upload", "batch_create", "batch_import",
    "batch_import_rows", "parse_amount", "parse_upload", "site_presets",
]

def parse_upload(data: bytes, *, filename: str, preset: str | SitePreset = "",
                 site: Site | None = None, sheet: str | None = None,
                 progress: Progress | None = None) -> Upload:
    """Read and validate a file without touching the database.

    `site` (a configured Site) wins over `preset`; its URLs are checked against the
    tenant's allow-list. KeyError when the site's preset is no longer loaded.
    """
    if site is not None:
        rules = site.tenant_preset()
    else:
        rules = preset if isinstance(preset, SitePreset) else _preset(preset or "demo")
    upload = Upload(filename=filename, sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data), preset=rules, site=site, data=data)
    try:
        table = read_table(data, filename, sheet=sheet or None,
                           max_rows=settings.POOL_MAX_ROWS,
                           max_bytes=settings.POOL_MAX_UPLOAD_BYTES, progress=progress)
    except ImportRefused as exc:
        for problem in exc.problems:
            upload.add(problem)
        return upload
    upload.kind, upload.encoding, upload.sheet = table.kind, table.encoding, table.sheet
    layout = read_layout(table, upload)
    if upload.problem_count:
        return upload
    if not table.rows:
        upload.add(Problem("no PO rows below the header", row=1))
        return upload
    validate_rows(table, layout, upload, progress)
    return upload


def batch_create(upload: Upload, *, name: str = "", uploaded_by: Any = None,
                 notes: str = "", progress: Progress | None = None) -> Batch:
    """Store a validated upload as one Batch with all its POs, in one transaction."""
    if not upload.ok:
        raise ImportRefused(upload.problems or [Problem("the file has no PO rows")])
    total, chunk = len(upload.rows), 2000
    with transaction.atomic():
        batch = Batch.objects.create(
            name=(name or Path(upload.filename).stem or "batch")[:200],
            uploaded_by=uploaded_by if getattr(uploaded_by, "pk", None) else None,
            source_name=upload.filename[:255], source_sha256=upload.sha256,
            source_size=upload.size, source_sheet=upload.sheet[:100], site=upload.site,
            site_preset=upload.preset.name, site_base_url=upload.preset.base_url,
            notes=notes, po_count=total, extra_columns=upload.extra_columns,
        )
        if upload.data:
            BatchSource.objects.create(batch=batch, kind=upload.kind, data=upload.data)
        for start in range(0, total, chunk):
            _insert_pos(batch, upload.rows[start:start + chunk])
            if progress:
                progress("save", min(start + chunk, total), total)
    return batch


def _insert_pos(batch: Batch, rows: list[ParsedRow]) -> None:
    """INSERT the POs with one executemany.

    bulk_create spends about 1 s of per-field Python on 10,000 rows, a third of the
    import budget; executemany is one loop in the driver. Values go through the fields'
    own get_db_prep_save where the backend cares (Decimal, JSON).
    """
    meta = PurchaseOrder._meta
    amount_field, extra_field = meta.get_field("amount"), meta.get_field("extra")
    defaults: dict[str, Any] = {
        "supplier_seen": "",
        "status": Status.QUEUED.value, "reason": "", "message": "", "attempts": 0,
        "output_folder": "", "first_attempt_at": None, "last_attempt_at": None,
        "leased_by": "", "lease_expires_at": None,
    }
    names = ["batch_id", "row_number", "po_number", "supplier", "url", "amount", "extra",
             *defaults]
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(n) for n in names)}) "
           f"VALUES ({', '.join(['%s'] * len(names))})")
    constant = list(defaults.values())
    params = [
        [batch.pk, row.row, row.po_number, row.supplier, row.url,
         amount_field.get_db_prep_save(row.amount, connection),
         extra_field.get_db_prep_save(row.extra, connection), *constant]
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def batch_import(data: bytes, *, filename: str, preset: str | SitePreset = "demo",
                 site: Site | None = None, name: str = "", uploaded_by: Any = None,
                 sheet: str | None = None, notes: str = "",
                 progress: Progress | None = None) -> Batch:
    """Validate and store a CSV/XLSX file as a Batch; raise ImportRefused on any problem."""
    upload = parse_upload(data, filename=filename, preset=preset, site=site, sheet=sheet,
                          progress=progress)
    if not upload.ok:
        raise ImportRefused(upload.problems or [Problem("the file has no PO rows")])
    return batch_create(upload, name=name, uploaded_by=uploaded_by, notes=notes,
                        progress=progress)


def batch_import_rows(rows: Iterable[Mapping[str, Any]], *, name: str,
                      preset: str | SitePreset = "demo", site: Site | None = None,
                      uploaded_by: Any = None, notes: str = "") -> Batch:
    """Import rows given as dicts (demo data, scripts) through the same validation."""
    return batch_import(rows_to_csv(rows), filename=f"{name}.csv", preset=preset, site=site,
                        name=name, uploaded_by=uploaded_by, notes=notes)


def rows_to_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    rows = list(rows)
    headers: dict[str, None] = {}
    for row in rows:
        headers.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if row.get(h) is None else str(row.get(h)) for h in headers])
    return out.getvalue().encode("utf-8")


def _preset(name: str) -> SitePreset:
    presets = site_presets()
    if name not in presets:
        raise ValueError(f"unknown site preset {name!r}; known: {', '.join(sorted(presets))}")
    return presets[name]


