"""Results sheets (CSV, XLSX) and a streamed ZIP of a batch's documents.

Cells come from untrusted places (the upload, the procurement site's pages), so every
text cell that a spreadsheet would run as a formula (= + - @ tab CR) gets a leading
apostrophe (OWASP "CSV injection"). Column headers too: extra columns are named by the
uploaded file. Amounts are numbers, never neutralised.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet

from poolsite.batches.models import Document, PurchaseOrder, amount_text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BASE_COLUMNS = ("po_number", "supplier", "amount", "url", "status", "reason", "message",
                "attempts", "files", "file_names", "warnings", "folder", "first_attempt_at",
                "last_attempt_at")
CHUNK = 1024 * 1024


def neutralise(text: str) -> str:
    """Make a text cell inert in spreadsheets: '=1+2' -> "'=1+2"."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def header_cells(columns: Iterable[str]) -> list[str]:
    """The header row as written to a sheet: every name neutralised like any text cell."""
    return [neutralise(str(column)) for column in columns]


def results_columns(extra_columns: Iterable[str]) -> list[str]:
    extras = [c for c in extra_columns if c not in BASE_COLUMNS]
    return [*BASE_COLUMNS, *extras]


def results_rows(pos: QuerySet[PurchaseOrder],
                 extra_columns: list[str]) -> Iterator[list[Any]]:
    """Yield one raw row per PO (amount a Decimal, times datetimes, the rest text)."""
    documents = Prefetch("documents",
                         queryset=Document.objects.only("po_id", "name", "warning"))
    for po in pos.order_by("batch_id", "id").prefetch_related(documents).iterator(2000):
        names = [d.name for d in po.documents.all()]
        flagged = "; ".join(d.warning for d in po.documents.all() if d.warning)  # names the file
        # No supplier in the file: the one the worker read from the PO page.
        yield [po.po_number, po.supplier_shown, po.amount, po.url, po.status, po.reason,
               po.message, po.attempts, len(names), "; ".join(names), flagged,
               po.output_folder,
               po.first_attempt_at, po.last_attempt_at,
               *(po.extra.get(c, "") for c in extra_columns)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def csv_rows(pos: QuerySet[PurchaseOrder], extra_columns: list[str]) -> Iterator[list[str]]:
    """Yield the header and every PO as neutralised CSV cells."""
    columns = results_columns(extra_columns)
    yield header_cells(columns)
    for row in results_rows(pos, columns[len(BASE_COLUMNS):]):
        yield [amount_text(v) if isinstance(v, Decimal) else
               str(v) if isinstance(v, int) else neutralise(_text(v)) for v in row]


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_stream(pos: QuerySet[PurchaseOrder], extra_columns: list[str]) -> Iterator[str]:
    """Yield the results sheet as CSV text, line by line (UTF-8 BOM first, for Excel)."""
    writer = csv.writer(_Echo())
    yield "\ufeff"
    for row in csv_rows(pos, extra_columns):
        yield writer.writerow(row)


def xlsx_bytes(pos: QuerySet[PurchaseOrder], extra_columns: list[str],
               title: str = "results") -> bytes:
    """Return the results sheet as an XLSX workbook (write-only mode, constant memory)."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:31] or "results")
    columns = results_columns(extra_columns)
    sheet.append([ILLEGAL_CHARACTERS_RE.sub("", cell) for cell in header_cells(columns)])
    for row in results_rows(pos, columns[len(BASE_COLUMNS):]):
        cells: list[Any] = []
        for value in row:
            if isinstance(value, (Decimal, int)):
                cells.append(value)
            elif isinstance(value, datetime):
                cells.append(value.replace(tzinfo=None))  # Excel has no time zones; UTC
            else:
                # openpyxl writes any string starting with "=" as a formula: neutralise.
                cells.append(neutralise(ILLEGAL_CHARACTERS_RE.sub("", _text(value))))
        sheet.append(cells)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


# -- ZIP of documents ------------------------------------------------------------------

def output_path(relative: str) -> Path | None:
    """Resolve a path relative to the output root; None if it escapes the root."""
    if not relative:
        return None
    root = Path(settings.OUTPUT_DIR).resolve()
    path = (root / relative).resolve()
    if path != root and root in path.parents:
        return path
    return None


class _Pipe(io.RawIOBase):
    """A write-only stream whose bytes are collected and handed out by `take()`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._offset

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def zip_stream(documents: Iterable[Document]) -> Iterator[bytes]:
    """Yield a ZIP of the documents' files chunk by chunk, never the whole archive.

    Files are stored, not deflated: PDFs and office files are compressed already, and
    the web process should not spend a core on it. Missing files are listed in
    MISSING.txt inside the archive instead of failing the download half-way.
    """
    pipe = _Pipe()
    missing: list[str] = []
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for document in documents:
            path = output_path(document.path)
            if path is None or not path.is_file():
                missing.append(document.path)
                continue
            # The resolved name, never the stored one: "a/../b" must not reach an unzipper.
            name = path.relative_to(Path(settings.OUTPUT_DIR).resolve()).as_posix()
            with path.open("rb") as source, zf.open(name, "w", force_zip64=True) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield pipe.take()
            yield pipe.take()
        if missing:
            zf.writestr("MISSING.txt", "Files recorded but not found on disk:\n"
                        + "\n".join(missing) + "\n")
    yield pipe.take()
