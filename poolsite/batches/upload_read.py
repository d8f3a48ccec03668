"""Read an uploaded CSV or XLSX into a header and raw rows, refusing hostile files.

    bytes ──▶ sniff (zip? OLE? text?) ──▶ CSV: decode, pick the delimiter, csv.reader
                                    └──▶ XLSX: zip guards, entity scan, openpyxl read-only
          ──▶ Table(headers, rows)  or  ImportRefused([Problem, ...])

Nothing here knows what a PO is; batch_import validates the rows.
"""

from __future__ import annotations

import codecs
import csv
import ctypes
import ctypes.util
import datetime as dt
import gc
import io
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Progress = Callable[[str, int, int], None]

MAX_COLUMNS = 100
MAX_XLSX_MEMBERS = 2000
MAX_XLSX_UNCOMPRESSED = 256 * 1024 * 1024
# The parse budget per part. openpyxl streams a sheet in read-only mode but loads the
# shared-strings table whole into Python strings (~10x its XML in memory): a 126 MB
# table within every other limit cost 58 s and over a gigabyte. 20,000 rows of distinct
# text in a dozen columns fit well inside these.
MAX_XLSX_PART = 64 * 1024 * 1024
MAX_XLSX_SHARED_STRINGS = 16 * 1024 * 1024
# Real sheets compress 5-20x; a member over 1 MB that compresses better than this is a bomb.
MAX_XLSX_RATIO = 100
DELIMITERS = (",", ";", "\t", "|")
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
ENTITY_MARKERS = (b"<!doctype", b"<!entity")
PO_SHEET = "po_data"  # the sheet Coupa users keep their POs on, beside others


@dataclass(frozen=True)
class Problem:
    """One reason a file cannot be imported, located as an operator would look for it."""

    message: str
    row: int | None = None  # spreadsheet row number: the header is row 1
    column: str = ""  # the header as written in the file, or the canonical name
    value: str | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        if self.value is not None:
            shown = self.value if len(self.value) <= 60 else self.value[:57] + "..."
            where.append(f"value {shown!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ImportRefused(Exception):
    """The file has problems; nothing was stored."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:5]))


def refuse(message: str, **where: Any) -> ImportRefused:
    return ImportRefused([Problem(message, **where)])


@dataclass
class Table:
    """A sheet as read: header cells and (row number, raw cells) for non-blank rows."""

    headers: list[str]
    rows: list[tuple[int, list[Any]]] = field(default_factory=list)
    kind: str = "csv"
    encoding: str = ""
    sheet: str = ""


def read_table(data: bytes, filename: str, *, sheet: str | None = None, max_rows: int,
               max_bytes: int, progress: Progress | None = None) -> Table:
    """Read `data` as CSV or XLSX (by content, not by name) or raise ImportRefused."""
    if len(data) > max_bytes:
        raise refuse(f"the file is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    if not data.strip():
        raise refuse("the file is empty")
    lower = filename.lower()
    if data.startswith(OLE_MAGIC):
        raise refuse("this is a legacy Excel .xls (or other OLE) file: "
                     "save it as .xlsx or CSV and upload that")
    if data.startswith(ZIP_MAGIC):
        try:
            return _read_xlsx(data, sheet, max_rows, progress)
        finally:
            release_memory()
    if lower.endswith((".xlsx", ".xlsm")):
        raise refuse(f"{filename} is named like an XLSX workbook but is not one "
                     "(an XLSX file is a zip archive)")
    if sheet:
        raise refuse(f"a sheet name ({sheet!r}) was given but the file is not an XLSX workbook")
    return _read_csv(data, max_rows, progress)


def release_memory() -> None:
    """Hand the memory a workbook's parse freed back to the system.

    openpyxl builds the shared-strings table and every cell as small Python objects;
    once the rows are read they are garbage, but the C allocator keeps the freed heap
    for reuse, and this is the long-lived process that also hosts the supervisor.
    A collection, then glibc's malloc_trim, returns it (bench/bench_workbook_memory.py).
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


# -- CSV -------------------------------------------------------------------------------

def decode_text(data: bytes) -> tuple[str, str]:
    """Decode UTF-8 (BOM or not) or UTF-16 with a BOM, else Windows-1252/Latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8 (BOM)"
        except UnicodeDecodeError as exc:
            raise refuse(f"the file starts with a UTF-8 byte-order mark but byte "
                         f"{exc.start + 3} is not UTF-8") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError:
            raise refuse("the file starts with a UTF-16 byte-order mark but is not UTF-16") \
                from None
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise refuse(f"the file contains NUL bytes (first at byte {offset}): it is binary, "
                     "or UTF-16 without a byte-order mark; save it as CSV UTF-8")
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "Latin-1"


def sniff_delimiter(first_line: str) -> str:
    """Pick the delimiter that splits the header line into the most cells."""
    best, best_count = ",", 0
    for delimiter in DELIMITERS:
        count = len(next(csv.reader([first_line], delimiter=delimiter), []))
        if count > best_count:
            best, best_count = delimiter, count
    return best


def _read_csv(data: bytes, max_rows: int, progress: Progress | None) -> Table:
    text, encoding = decode_text(data)
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    delimiter = sniff_delimiter(first_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    estimate = text.count("\n")
    table = Table(headers=[], kind="csv", encoding=encoding)
    try:
        _fill(table, enumerate(reader, start=1), max_rows, progress, estimate)
    except csv.Error as exc:
        raise refuse(f"malformed CSV: {exc}", row=reader.line_num or None) from None
    label = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter]
    table.encoding = f"{encoding}, {label}-separated"
    return table


def _fill(table: Table, rows: Iterator[tuple[int, Any]], max_rows: int,
          progress: Progress | None, estimate: int) -> None:
    """Take the first non-blank row as the header and the other non-blank rows as data."""
    blank_allowance = max_rows + 1000  # a sheet of millions of empty rows is a bomb too
    blanks = 0
    for number, cells in rows:
        cells = list(cells)
        while cells and _blank(cells[-1]):  # read-only XLSX pads rows to max_col
            cells.pop()
        if not cells:
            blanks += 1
            if blanks > blank_allowance:
                raise refuse(f"more than {blank_allowance:,} blank rows")
            continue
        if len(cells) > MAX_COLUMNS:
            raise refuse(f"more than {MAX_COLUMNS} columns; the limit is {MAX_COLUMNS}",
                         row=number)
        if not table.headers:
            table.headers = [header_text(cell) for cell in cells]
            continue
        if len(table.rows) >= max_rows:
            raise refuse(f"more than {max_rows:,} rows; the limit is {max_rows:,} POs per "
                         "batch: split the file")
        table.rows.append((number, cells))
        if progress and len(table.rows) % 1000 == 0:
            progress("read", len(table.rows), max(estimate, len(table.rows)))


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def header_text(cell: Any) -> str:
    return "" if cell is None else str(cell).strip()


# -- XLSX ------------------------------------------------------------------------------

def _read_xlsx(data: bytes, sheet: str | None, max_rows: int,
               progress: Progress | None) -> Table:
    _check_zip(data)
    import openpyxl  # imported here: it is slow to import and only XLSX needs it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no default style" and friends are harmless
        try:
            workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True,
                                              data_only=False)
        except Exception as exc:  # openpyxl raises many types for damaged files
            raise refuse(f"not a readable XLSX workbook ({type(exc).__name__}: {exc})") \
                from None
    try:
        names = workbook.sheetnames
        if sheet and sheet not in names:
            raise refuse(f"no sheet named {sheet!r}; the workbook has: {', '.join(names)}")
        worksheet = workbook[sheet or po_sheet_name(names)]
        table = Table(headers=[], kind="xlsx", sheet=worksheet.title)
        estimate = getattr(worksheet, "max_row", None) or 0
        # Read-only rows are padded to max_col: ask for no more than the sheet's width.
        width = min(getattr(worksheet, "max_column", None) or MAX_COLUMNS + 1,
                    MAX_COLUMNS + 1)
        rows = worksheet.iter_rows(values_only=True, max_col=width)
        try:
            _fill(table, enumerate(rows, start=1), max_rows, progress, estimate)
        except ImportRefused:
            raise
        except Exception as exc:  # damaged sheet XML surfaces while iterating
            raise refuse(f"not a readable XLSX sheet ({type(exc).__name__}: {exc})") from None
        return table
    finally:
        workbook.close()


def po_sheet_name(names: list[str]) -> str:
    """The sheet to read when none is named: `PO_Data` (any case) if present, else the first."""
    return next((name for name in names if name.strip().lower() == PO_SHEET), names[0])


def _check_zip(data: bytes) -> None:
    """Refuse zip bombs, non-workbook archives and XML with DTDs (entity expansion)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise refuse(f"not an XLSX workbook: damaged zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_XLSX_MEMBERS:
            raise refuse(f"the workbook has {len(infos):,} parts; the limit is "
                         f"{MAX_XLSX_MEMBERS:,} (zip bomb?)")
        if "xl/workbook.xml" not in {info.filename for info in infos}:
            raise refuse("not an XLSX workbook: the zip archive has no xl/workbook.xml "
                         "(an .ods, .docx or plain zip?)")
        total = sum(info.file_size for info in infos)
        if total > MAX_XLSX_UNCOMPRESSED:
            raise refuse(f"the workbook unpacks to {total:,} bytes; the limit is "
                         f"{MAX_XLSX_UNCOMPRESSED:,} (zip bomb?)")
        for info in infos:  # every size first: nothing is unpacked before all pass
            _check_part_size(info)
        for info in infos:
            if info.filename.endswith((".xml", ".rels", ".vml")):
                _check_xml_member(archive, info)


def _check_part_size(info: zipfile.ZipInfo) -> None:
    """Refuse a part that unpacks past the parse budget, or expands like a bomb."""
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > 1024 * 1024 and ratio > MAX_XLSX_RATIO:
        raise refuse(f"workbook part {info.filename} expands {ratio:,.0f}-fold "
                     f"(zip bomb?)")
    shared = info.filename.lower() == "xl/sharedstrings.xml"
    limit = MAX_XLSX_SHARED_STRINGS if shared else MAX_XLSX_PART
    if info.file_size > limit:
        what = "its shared-strings table" if shared else "it"
        raise refuse(f"workbook part {info.filename} unpacks to {info.file_size:,} bytes; "
                     f"the limit is {limit:,} bytes: {what} is too large to read safely "
                     "(save only the PO sheet as a new workbook, or as CSV)")


def _check_xml_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    tail = b""
    try:
        with archive.open(info) as member:
            while chunk := member.read(256 * 1024):
                window = (tail + chunk).lower()
                if any(marker in window for marker in ENTITY_MARKERS):
                    raise refuse(f"workbook part {info.filename} declares a DTD or XML "
                                 "entities, which XLSX files never need (entity expansion "
                                 "attack?)")
                tail = window[-16:]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError,
            NotImplementedError) as exc:
        raise refuse(f"not an XLSX workbook: part {info.filename} is damaged ({exc})") \
            from None


def cell_text(value: Any) -> str:
    """Turn a raw cell (str from CSV; str/int/float/date/bool from XLSX) into text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if value.time() != dt.time(0) else \
            value.date().isoformat()
    if isinstance(value, (int, Decimal, dt.date, dt.time)):
        return str(value)
    return str(value).strip()


_ILLEGAL_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def strip_control(text: str) -> str:
    """Drop control characters that have no business in a cell (keeps tab/CR/LF)."""
    return _ILLEGAL_CONTROL.sub("", text)
