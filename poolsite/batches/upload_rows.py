"""What a valid upload is: the Upload, its header's layout, and the checks of every row.

    read_layout(table, upload) -> Layout      (which column holds what; header problems)
    validate_rows(table, layout, upload)      (each row checked; ParsedRow or Problems)

Every problem names its row, column and value; nothing here touches the database.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from pool_core.sites import SitePreset
from poolsite.batches.models import AMOUNT_DIGITS, AMOUNT_PLACES, Site, amount_text
from poolsite.batches.upload_read import Problem, Progress, Table, cell_text, strip_control

REQUIRED = ("po_number",)
# Matched after header_key(): "PO Number", "PO_NUMBER" and "po number" are all po_number.
ALIASES: dict[str, tuple[str, ...]] = {
    "po_number": ("po_number", "po", "po_no", "po_nr", "po_num", "ponumber", "po_id",
                  "purchase_order", "purchase_order_number", "purchase_order_no",
                  "order_number", "order_no"),
    "supplier": ("supplier", "supplier_name", "vendor", "vendor_name", "po_supplier",
                 "po_supplier_name"),
    "url": ("url", "po_url", "link", "po_link", "page_url", "address"),
    "amount": ("amount", "po_amount", "total", "total_amount", "amount_total", "value",
               "po_value", "net_amount", "po_total", "order_total"),
}
CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
PO_NUMBER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PLAIN_AMOUNT_RE = re.compile(r"^\d+(\.\d+)?$")
GROUPED_AMOUNT_RE = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
CURRENCY_MARKS = "$€£¥"
MAX_PROBLEMS = 500
MAX_SUPPLIER = 255
MAX_URL = 2000
MAX_HOSTS = 100  # distinct hosts resolved per upload (DNS lookups are not free)
MAX_EXTRA_VALUE = 2000


@dataclass(frozen=True)
class ParsedRow:
    row: int
    po_number: str
    supplier: str
    url: str
    amount: Decimal | None
    extra: dict[str, str]


@dataclass
class Upload:
    """A file read and validated, ready to preview and, when `ok`, to store."""

    filename: str
    sha256: str
    size: int
    preset: SitePreset
    kind: str = ""
    encoding: str = ""
    sheet: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> header as written
    extra_columns: list[str] = field(default_factory=list)
    rows: list[ParsedRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    site: Site | None = None  # the configured site, when the upload names one
    hosts: set[str] = field(default_factory=set, repr=False)  # hosts of the rows' URLs
    data: bytes = field(default=b"", repr=False)  # the file, kept with the batch

    @property
    def ok(self) -> bool:
        return not self.problem_count and bool(self.rows)

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def preview(self, n: int = 10) -> list[tuple[ParsedRow, list[str]]]:
        """Return the first rows, each with its extra values in column order."""
        return [(row, [row.extra.get(c, "") for c in self.extra_columns])
                for row in self.rows[:n]]

    def total_amount(self) -> str:
        amounts = [row.amount for row in self.rows if row.amount is not None]
        return amount_text(sum(amounts, Decimal(0))) if amounts else ""

    def supplier_count(self) -> int:
        return len({row.supplier for row in self.rows if row.supplier})


# -- header ----------------------------------------------------------------------------

@dataclass
class Layout:
    index: dict[str, int]  # canonical column -> cell index
    extras: list[tuple[int, str]]  # (cell index, column name)
    labels: list[str]  # "C (Amount)" per cell index, for problems


def header_key(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def read_layout(table: Table, upload: Upload) -> Layout:
    headers = list(table.headers)
    while headers and not headers[-1]:
        headers.pop()
    labels = [f"{column_letter(i)} ({h or 'no header'})" for i, h in enumerate(headers)]
    layout = Layout(index={}, extras=[], labels=labels)
    seen: dict[str, int] = {}
    for i, header in enumerate(headers):
        name = header or f"column {column_letter(i)}"
        if header.startswith("="):
            upload.add(Problem("a header may not be a formula", row=1, column=labels[i],
                               value=header))
        if name.lower() in seen:
            upload.add(Problem(f"the header appears twice (also column "
                               f"{column_letter(seen[name.lower()])})", row=1,
                               column=labels[i], value=header))
            continue
        seen[name.lower()] = i
        canonical = CANONICAL.get(header_key(header))
        if canonical and canonical in layout.index:
            other = layout.labels[layout.index[canonical]]
            upload.add(Problem(f"both this column and {other} mean {canonical}", row=1,
                               column=labels[i], value=header))
        elif canonical:
            layout.index[canonical] = i
            upload.columns[canonical] = header
        else:
            layout.extras.append((i, name))
    _check_required(headers, layout, upload)
    upload.extra_columns = [name for _, name in layout.extras]
    return layout


def _check_required(headers: list[str], layout: Layout, upload: Upload) -> None:
    found = ", ".join(repr(h) for h in headers if h) or "none"
    for name in REQUIRED:
        if name not in layout.index:
            spellings = "/".join(ALIASES[name][:3])
            upload.add(Problem(f"required column is missing (accepted names include "
                               f"{spellings}; the first row must be the header; "
                               f"headers found: {found})", row=1, column=name))
    if "url" not in layout.index and not upload.preset.base_url:
        upload.add(Problem(f"no url column, and site {upload.preset.name!r} has no base "
                           "URL to build PO page addresses from", row=1, column="url"))


# -- rows ------------------------------------------------------------------------------

def validate_rows(table: Table, layout: Layout, upload: Upload,
                   progress: Progress | None) -> None:
    first_row: dict[str, int] = {}
    width = len(layout.labels)
    total = len(table.rows)
    for done, (number, cells) in enumerate(table.rows, start=1):
        overflow = [c for c in cells[width:] if cell_text(c)]
        if overflow:
            upload.add(Problem(f"{width + len(overflow)} values but only {width} columns "
                               "have a header", row=number, value=cell_text(overflow[0])))
            continue
        row = _validate_row(number, cells, layout, upload)
        po_number = strip_control(cell_text(_cell(cells, layout.index["po_number"])))
        if po_number and po_number in first_row:
            upload.add(Problem(f"duplicate PO number (first seen in row "
                               f"{first_row[po_number]})", row=number,
                               column=_label(layout, "po_number"), value=po_number))
            continue
        first_row.setdefault(po_number, number)
        if row is not None:
            upload.rows.append(row)
        if progress and done % 1000 == 0:
            progress("check", done, total)
    if upload.problem_count:
        upload.rows = []


def _label(layout: Layout, name: str) -> str:
    return layout.labels[layout.index[name]]


def _cell(cells: list[Any], index: int | None) -> Any:
    return cells[index] if index is not None and index < len(cells) else None


def _validate_row(number: int, cells: list[Any], layout: Layout,
                  upload: Upload) -> ParsedRow | None:
    before = upload.problem_count

    def problem(name: str, message: str, value: Any) -> None:
        upload.add(Problem(message, row=number, column=_label(layout, name),
                           value=cell_text(value)))

    texts = {name: strip_control(cell_text(_cell(cells, i))) for name, i in layout.index.items()}
    for name, text in texts.items():
        if text.startswith("="):
            problem(name, "looks like a spreadsheet formula: import values only", text)
    po_number, supplier = texts["po_number"], texts.get("supplier", "")
    if not po_number:
        problem("po_number", "PO number is missing", po_number)
    elif not PO_NUMBER_RE.match(po_number) and not po_number.startswith("="):
        problem("po_number", "a PO number is letters, digits, '.', '_' and '-' "
                "(at most 64 characters)", po_number)
    # Optional columns: absent is fine, but a column given is filled on every row (a gap
    # is more often a paste mistake than a wish to have the page's supplier).
    if "supplier" in layout.index and not supplier:
        problem("supplier", "supplier is missing (or leave the supplier column out: the "
                "supplier shown on each PO page is used then)", supplier)
    elif len(supplier) > MAX_SUPPLIER:
        problem("supplier", f"supplier is longer than {MAX_SUPPLIER} characters", supplier)
    amount: Decimal | None = None
    if "amount" in layout.index:
        amount, why = parse_amount(_cell(cells, layout.index["amount"]))
        if why and not texts["amount"].startswith("="):  # a formula is reported once, above
            problem("amount", why, _cell(cells, layout.index["amount"]))
    url = _row_url(texts.get("url", ""), po_number, upload,
                   lambda message, value: problem("url", message, value))
    extra = _row_extra(number, cells, layout, upload)
    if upload.problem_count != before:
        return None
    return ParsedRow(number, po_number, supplier, url, amount, extra)


def _row_url(text: str, po_number: str, upload: Upload, problem: Any) -> str:
    if not text:
        if not upload.preset.base_url:
            if "url" in upload.columns:
                problem("URL is missing and the site has no base URL to build it from", text)
            return ""
        if not po_number:
            return ""
        return upload.preset.build_url(po_number)
    if text.startswith("="):
        return ""
    if len(text) > MAX_URL:
        problem(f"URL is longer than {MAX_URL} characters", text)
        return ""
    why = upload.preset.check_url(text)
    if not why:
        host = (urlsplit(text).hostname or "").lower()
        upload.hosts.add(host)
        if len(upload.hosts) > MAX_HOSTS:
            why = (f"the file names more than {MAX_HOSTS} different hosts; each one is "
                   "looked up in DNS: split the batch")
        else:
            why = upload.preset.check_resolved(text)  # a name pointing at 127.0.0.1...
    if why:
        problem(f"URL not allowed: {why}", text)
        return ""
    return text


def _row_extra(number: int, cells: list[Any], layout: Layout, upload: Upload) -> dict[str, str]:
    extra: dict[str, str] = {}
    for index, name in layout.extras:
        text = strip_control(cell_text(_cell(cells, index)))
        if not text:
            continue
        if text.startswith("="):
            upload.add(Problem("looks like a spreadsheet formula: import values only",
                               row=number, column=layout.labels[index], value=text))
        elif len(text) > MAX_EXTRA_VALUE:
            upload.add(Problem(f"value is longer than {MAX_EXTRA_VALUE} characters",
                               row=number, column=layout.labels[index], value=text))
        extra[name] = text
    return extra


def parse_amount(raw: Any) -> tuple[Decimal | None, str]:
    """Parse an amount as Decimal (never float); return (amount, "") or (None, why)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, "amount is missing"
    if isinstance(raw, bool):
        return None, "amount is TRUE/FALSE, not a number"
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return None, "amount is not a finite number"
        value = Decimal(repr(raw))
        # Binary floats carry noise (0.1 + 0.2); four places is the stored precision.
        if value.as_tuple().exponent < -AMOUNT_PLACES:  # type: ignore[operator]
            value = value.quantize(Decimal(1).scaleb(-AMOUNT_PLACES))
        return _amount_bounds(value)
    if isinstance(raw, (int, Decimal)):
        return _amount_bounds(Decimal(raw))
    text = str(raw).strip().replace(" ", "").replace("\u00a0", "").strip(CURRENCY_MARKS)
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if GROUPED_AMOUNT_RE.match(digits):
        digits = digits.replace(",", "")
    if not PLAIN_AMOUNT_RE.match(digits):
        return None, "not a decimal amount (write it like 1234.56)"
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None, "not a decimal amount (write it like 1234.56)"
    return _amount_bounds(-value if negative else value)


def _amount_bounds(value: Decimal) -> tuple[Decimal | None, str]:
    if not value.is_finite():
        return None, "amount is not a finite number"
    if value < 0:
        return None, "amount is negative"
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -AMOUNT_PLACES:
        return None, f"amount has more than {AMOUNT_PLACES} decimal places"
    if value >= Decimal(10) ** (AMOUNT_DIGITS - AMOUNT_PLACES):
        return None, "amount is too large"
    return value, ""
