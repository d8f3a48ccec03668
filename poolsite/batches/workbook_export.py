"""Results in the operator's own file: the uploaded workbook (or CSV) with status beside
each PO's row.

    BatchSource (the bytes) ──▶ XLSX: openpyxl, the PO sheet gets poolsite_* columns
                                      right of its used range; other sheets untouched
                            └─▶ CSV: the original columns, then the poolsite_* columns

Only the cells written here are neutralised (batch_export.neutralise): the operator's
own cells, formulas included, are theirs. A workbook that already has poolsite_*
columns (the results uploaded again) gets them overwritten, not repeated.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from poolsite.batches.batch_export import neutralise
from poolsite.batches.models import Batch, BatchSource, Document, PurchaseOrder
from poolsite.batches.upload_read import cell_text, read_table

STATUS_COLUMNS = ("poolsite_status", "poolsite_reason", "poolsite_message", "poolsite_files",
                  "poolsite_warnings", "poolsite_folder", "poolsite_supplier_seen")
MAX_CELL = 32767  # Excel's limit for one cell's text
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class NoSource(Exception):
    """The batch has no stored file (uploaded before files were kept)."""


def status_by_row(batch: Batch) -> dict[int, list[str]]:
    """Each PO's status cells, keyed by its row in the source file."""
    documents = Prefetch("documents",
                         queryset=Document.objects.only("po_id", "name", "warning"))
    rows: dict[int, list[str]] = {}
    for po in batch.pos.order_by("id").prefetch_related(documents).iterator(2000):
        rows[po.row_number] = _status_cells(po)
    return rows


def _status_cells(po: PurchaseOrder) -> list[str]:
    names = "; ".join(d.name for d in po.documents.all())
    flagged = "; ".join(d.warning for d in po.documents.all() if d.warning)  # names the file
    return [po.status, po.reason, po.message, names, flagged, po.output_folder,
            po.supplier_seen]


def _clean(text: str) -> str:
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return neutralise(ILLEGAL_CHARACTERS_RE.sub("", text)[:MAX_CELL])


def source_of(batch: Batch) -> BatchSource:
    """The stored file, else the copy the upload page staged (older batches)."""
    source = BatchSource.objects.filter(batch=batch).first()
    if source is not None:
        return source
    staged = Path(settings.DATA_DIR) / "uploads" / batch.source_sha256
    if batch.source_sha256 and staged.is_file():
        data = staged.read_bytes()
        kind = "xlsx" if data.startswith(b"PK\x03\x04") else "csv"
        return BatchSource(batch=batch, kind=kind, data=data)
    raise NoSource(f"batch {batch.pk} was uploaded before poolsite kept the uploaded file")


def results_file(batch: Batch) -> tuple[bytes, str, str]:
    """Return (bytes, file name, content type) of the batch's results in its own file."""
    source = source_of(batch)
    stem = Path(batch.source_name).stem or f"batch-{batch.pk}"
    if source.kind == "xlsx":
        data = workbook_bytes(bytes(source.data), batch.source_sheet, status_by_row(batch))
        return data, f"{stem}-results.xlsx", XLSX_TYPE
    text = "".join(csv_lines(bytes(source.data), batch.source_name, status_by_row(batch)))
    return text.encode("utf-8"), f"{stem}-results.csv", "text/csv; charset=utf-8"


# -- XLSX ------------------------------------------------------------------------------

def workbook_bytes(data: bytes, sheet: str, statuses: dict[int, list[str]]) -> bytes:
    """The workbook with status columns on `sheet`, beside each PO's row."""
    import openpyxl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsupported extensions are dropped, not fatal
        # The bytes passed the upload's zip-bomb and entity checks when they came in.
        workbook = openpyxl.load_workbook(io.BytesIO(data))
    worksheet = workbook[sheet] if sheet in workbook.sheetnames else workbook.worksheets[0]
    header_row = _header_row(worksheet)
    columns = _status_column_indexes(worksheet, header_row)
    for name, column in zip(STATUS_COLUMNS, columns, strict=True):
        worksheet.cell(row=header_row, column=column, value=name)
    for row, cells in statuses.items():
        for value, column in zip(cells, columns, strict=True):
            worksheet.cell(row=row, column=column, value=_clean(value) or None)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _header_row(worksheet: Any) -> int:
    """The first row with a value: where the import read the header."""
    for row in worksheet.iter_rows(min_row=1, max_row=worksheet.max_row):
        if any(cell.value is not None and str(cell.value).strip() for cell in row):
            return int(row[0].row)
    return 1


def _status_column_indexes(worksheet: Any, header_row: int) -> list[int]:
    """Where each status column goes: its existing column, else right of the used range."""
    existing = {str(cell.value).strip().lower(): int(cell.column)
                for cell in worksheet[header_row] if cell.value is not None}
    following = worksheet.max_column + 1
    indexes = []
    for name in STATUS_COLUMNS:
        if name in existing:
            indexes.append(existing[name])
        else:
            indexes.append(following)
            following += 1
    return indexes


# -- CSV -------------------------------------------------------------------------------

class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(data: bytes, filename: str, statuses: dict[int, list[str]]) -> Iterator[str]:
    """The CSV's own columns, then the status columns; UTF-8 with a BOM, for Excel."""
    table = read_table(data, filename, max_rows=settings.POOL_MAX_ROWS,
                       max_bytes=max(len(data), settings.POOL_MAX_UPLOAD_BYTES))
    width = len(table.headers)
    kept = [i for i, h in enumerate(table.headers) if h.lower() not in STATUS_COLUMNS]
    writer = csv.writer(_Echo())
    yield "\ufeff"
    yield writer.writerow([neutralise(table.headers[i]) for i in kept] + list(STATUS_COLUMNS))
    blank = [""] * len(STATUS_COLUMNS)
    for number, cells in table.rows:
        cells = list(cells) + [""] * (width - len(cells))
        original = [neutralise(cell_text(cells[i])) for i in kept]
        yield writer.writerow(original + [neutralise(v) for v in statuses.get(number, blank)])
