"""A corpus of bad upload files, each with the message an operator must see.

Generated in code so the corpus documents itself; `python -m tests.poolsite.badfiles DIR`
writes the files out for a look (or for trying them in the web form).
"""

from __future__ import annotations

import io
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = "po_number,supplier,amount\n"
GOOD = "PO200001,Acme Office Supply,10.50\n"


@dataclass(frozen=True)
class BadFile:
    name: str
    data: bytes
    expected: tuple[str, ...]  # substrings of the problems, all of which must appear
    preset: str = "demo"
    sheet: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def csv_file(name: str, text: str, *expected: str, encoding: str = "utf-8",
             **options: Any) -> BadFile:
    return BadFile(name, text.encode(encoding), expected, **options)


def xlsx(rows: list[list[Any]], title: str = "POs") -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def rezip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """Copy an XLSX, replacing some of its parts."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, replace.get(info.filename, source.read(info)))
    return out.getvalue()


GOOD_XLSX_ROWS: list[list[Any]] = [["PO Number", "Supplier", "Amount"],
                                   ["PO200001", "Acme Office Supply", 10.5]]
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;")
                                                * 10) for i in range(1, 10))
          + b']><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
          b'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row>'
          b"</sheetData></worksheet>")


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\x20" * (20 * 1024 * 1024))
    return out.getvalue()


def corpus() -> list[BadFile]:
    """Return every bad file with the problem text it must produce."""
    good_xlsx = xlsx(GOOD_XLSX_ROWS)
    return [
        # -- structure ---------------------------------------------------------------
        csv_file("empty.csv", "", "the file is empty"),
        csv_file("blank-lines.csv", "\n \n\r\n", "the file is empty"),
        csv_file("header-only.csv", HEADER, "row 1", "no PO rows below the header"),
        csv_file("missing-po-column.csv", "supplier,amount\nAcme,1\n",
                 "row 1, column po_number: required column is missing",
                 "headers found: 'supplier', 'amount'"),
        csv_file("only-optional-columns.csv", "Supplier Name,PO_AMOUNT\nAcme,5\n",
                 "row 1, column po_number: required column is missing",
                 "headers found: 'Supplier Name', 'PO_AMOUNT'"),
        csv_file("no-header.csv", "PO200001,Acme,10\nPO200002,Acme,11\n",
                 "column po_number: required column is missing",
                 "the first row must be the header"),
        csv_file("duplicate-header.csv", "po_number,supplier,amount,Supplier\nPO1,A,1,B\n",
                 "row 1, column D (Supplier), value 'Supplier': the header appears twice"),
        csv_file("two-po-columns.csv", "po_number,PO Number,supplier,amount\nPO1,PO1,A,1\n",
                 "row 1, column B (PO Number), value 'PO Number': both this column and "
                 "A (po_number) mean po_number"),
        csv_file("too-many-values.csv", HEADER + GOOD + "PO200002,Acme,11,surplus\n",
                 "row 3", "value 'surplus'", "4 values but only 3 columns have a header"),
        csv_file("too-many-columns.csv",
                 ",".join(["po_number", "supplier", "amount"] + [f"x{i}" for i in range(120)])
                 + "\n", "row 1", "more than 100 columns; the limit is 100"),
        csv_file("unterminated-quote.csv", HEADER + 'PO200001,"Acme,10\n',
                 "malformed CSV", "unexpected end of data"),
        csv_file("huge.csv", HEADER + GOOD * 2000, "bytes; the limit is 10,000 bytes",
                 settings={"POOL_MAX_UPLOAD_BYTES": 10_000}),
        csv_file("too-many-rows.csv",
                 HEADER + "".join(f"PO{i},Acme,1\n" for i in range(60)),
                 "more than 50 rows; the limit is 50 POs per batch",
                 settings={"POOL_MAX_ROWS": 50}),
        # -- encodings ---------------------------------------------------------------
        BadFile("utf16-without-bom.csv", (HEADER + GOOD).encode("utf-16-le"),
                ("NUL bytes", "UTF-16 without a byte-order mark",)),
        BadFile("pdf-named.csv", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\x00<<>>\nendobj\n",
                ("NUL bytes (first at byte 22)", "binary")),
        BadFile("bom-then-latin1.csv", b"\xef\xbb\xbf" + (HEADER + "PO1,Caf\xe9,1\n")
                .encode("latin-1"), ("UTF-8 byte-order mark but byte", "is not UTF-8")),
        # -- values ------------------------------------------------------------------
        csv_file("missing-po-number.csv", HEADER + GOOD + ",Acme,10\n",
                 "row 3, column A (po_number), value '': PO number is missing"),
        csv_file("bad-po-number.csv", HEADER + "PO 12/3,Acme,10\n",
                 "row 2, column A (po_number), value 'PO 12/3': a PO number is letters"),
        csv_file("long-po-number.csv", HEADER + "PO" + "9" * 80 + ",Acme,10\n",
                 "row 2, column A (po_number)", "at most 64 characters"),
        csv_file("missing-supplier.csv", HEADER + GOOD + "PO200002, ,10\n",
                 "row 3, column B (supplier), value '': supplier is missing"),
        csv_file("long-supplier.csv", HEADER + "PO1," + "S" * 300 + ",10\n",
                 "row 2, column B (supplier)", "longer than 255 characters"),
        csv_file("amount-letters.csv", HEADER + "PO1,Acme,12x\n",
                 "row 2, column C (amount), value '12x': not a decimal amount"),
        csv_file("amount-decimal-comma.csv", "po_number;supplier;amount\nPO1;Acme;12,5\n",
                 "row 2, column C (amount), value '12,5': not a decimal amount"),
        csv_file("amount-missing.csv", HEADER + "PO1,Acme,\n",
                 "row 2, column C (amount), value '': amount is missing"),
        csv_file("amount-negative.csv", HEADER + "PO1,Acme,-5.00\n",
                 "row 2, column C (amount), value '-5.00': amount is negative"),
        csv_file("amount-nan.csv", HEADER + "PO1,Acme,NaN\n",
                 "row 2, column C (amount), value 'NaN': not a decimal amount"),
        csv_file("amount-exponent.csv", HEADER + "PO1,Acme,1e5\n",
                 "row 2, column C (amount), value '1e5': not a decimal amount"),
        csv_file("amount-precision.csv", HEADER + "PO1,Acme,1.23456\n",
                 "row 2, column C (amount), value '1.23456': amount has more than 4 decimal"),
        csv_file("amount-huge.csv", HEADER + "PO1,Acme,100000000000\n",
                 "row 2, column C (amount), value '100000000000': amount is too large"),
        csv_file("duplicate-po.csv", HEADER + GOOD + "PO200002,Acme,1\n" + GOOD,
                 "row 4, column A (po_number), value 'PO200001': duplicate PO number "
                 "(first seen in row 2)"),
        # -- formulas ----------------------------------------------------------------
        csv_file("formula-supplier.csv",
                 HEADER + 'PO1,"=HYPERLINK(""http://evil"",""x"")",1\n',
                 "row 2, column B (supplier), value '=HYPERLINK(\"http://evil\",\"x\")': "
                 "looks like a spreadsheet formula"),
        csv_file("formula-extra.csv", "po_number,supplier,amount,Note\n"
                 "PO1,Acme,1,=cmd|' /C calc'!A0\n",
                 "row 2, column D (Note), value \"=cmd|' /C calc'!A0\": looks like a "
                 "spreadsheet formula"),
        csv_file("formula-po-number.csv", HEADER + "=1+2,Acme,1\n",
                 "row 2, column A (po_number), value '=1+2': looks like a spreadsheet formula"),
        # -- URLs --------------------------------------------------------------------
        csv_file("url-javascript.csv", "po_number,supplier,amount,url\n"
                 "PO1,Acme,1,javascript:alert(1)\n",
                 "row 2, column D (url), value 'javascript:alert(1)': URL not allowed: "
                 "scheme javascript: is not allowed"),
        csv_file("url-file.csv", "po_number,supplier,amount,url\n"
                 "PO1,Acme,1,file:///etc/passwd\n",
                 "row 2, column D (url), value 'file:///etc/passwd'", "scheme file:"),
        csv_file("url-outside-allow-list.csv", "po_number,supplier,amount,url\n"
                 "PO1,Acme,1,https://evil.example.com/order_headers/1\n",
                 "row 2, column D (url)", "host evil.example.com is not in the allow-list "
                 "of site 'demo'"),
        csv_file("url-private-for-coupa.csv", "po_number,supplier,amount,url\n"
                 "PO1,Acme,1,http://10.1.2.3/order_headers/1\n",
                 "row 2, column D (url), value 'http://10.1.2.3/order_headers/1'",
                 "host 10.1.2.3 is a loopback, private or link-local address", preset="coupa"),
        csv_file("url-too-long.csv", "po_number,supplier,amount,url\n"
                 "PO1,Acme,1,http://127.0.0.1/" + "a" * 2100 + "\n",
                 "row 2, column D (url)", "URL is longer than 2000 characters"),
        csv_file("no-url-no-base.csv", HEADER + GOOD,
                 "row 1, column url: no url column, and site 'coupa' has no base URL",
                 preset="coupa"),
        # -- XLSX --------------------------------------------------------------------
        BadFile("text-named.xlsx", (HEADER + GOOD).encode(),
                ("text-named.xlsx is named like an XLSX workbook but is not one",)),
        BadFile("legacy.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600,
                ("legacy Excel .xls",)),
        BadFile("plain-zip.xlsx", _plain_zip(), ("no xl/workbook.xml",)),
        BadFile("truncated.xlsx", good_xlsx[: len(good_xlsx) // 2],
                ("not an XLSX workbook: damaged zip archive",)),
        BadFile("zip-bomb.xlsx", zip_bomb(),
                ("workbook part xl/worksheets/sheet1.xml expands", "zip bomb")),
        BadFile("entities.xlsx", rezip(good_xlsx, {"xl/worksheets/sheet1.xml": LAUGHS}),
                ("declares a DTD or XML entities",)),
        BadFile("damaged-sheet.xlsx",
                rezip(good_xlsx, {"xl/worksheets/sheet1.xml": b"<worksheet><sheetData><row"}),
                ("not a readable XLSX",)),
        BadFile("missing-sheet.xlsx", good_xlsx, ("no sheet named 'Orders'; the workbook "
                                                  "has: POs",), sheet="Orders"),
        BadFile("formula-cell.xlsx",
                xlsx([["PO Number", "Supplier", "Amount"], ["PO1", "Acme", "=SUM(1,2)"]]),
                ("row 2, column C (Amount), value '=SUM(1,2)': looks like a spreadsheet "
                 "formula",)),
        BadFile("bad-values.xlsx",
                xlsx([["PO Number", "Supplier", "Amount"], ["PO1", "Acme", True],
                      ["PO2", None, 5], ["PO1", "Acme", "n/a"]]),
                ("row 2, column C (Amount), value 'TRUE': amount is TRUE/FALSE",
                 "row 3, column B (Supplier), value '': supplier is missing",
                 "row 4, column C (Amount), value 'n/a': not a decimal amount",
                 "row 4, column A (PO Number), value 'PO1': duplicate PO number")),
        BadFile("too-many-columns.xlsx",
                xlsx([["PO Number", "Supplier", "Amount", *range(120)], ["PO1", "Acme", 1]]),
                ("row 1: more than 100 columns; the limit is 100",)),
        BadFile("xlsx-missing-column.xlsx", xlsx([["Supplier", "Amount"], ["Acme", 5]]),
                ("row 1, column po_number: required column is missing",)),
        BadFile("sheet-name-for-csv.csv", (HEADER + GOOD).encode(),
                ("a sheet name ('POs') was given but the file is not an XLSX",), sheet="POs"),
    ]


def _plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    return out.getvalue()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "badfiles")
    target.mkdir(parents=True, exist_ok=True)
    for bad in corpus():
        (target / bad.name).write_bytes(bad.data)
        print(f"{bad.name}: {' | '.join(bad.expected)}")
