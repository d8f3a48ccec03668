"""Nothing in any export runs as a spreadsheet formula: values and column headers.

The attack: an uploaded CSV whose extra column is named `@SUM(1+1)*cmd|'/C calc'!A0`
(the import refuses headers starting with "=" only) came back verbatim as a header of
the results sheet. Every export is checked here, through the views a user downloads
from: the batch results (CSV, XLSX) and the admin's export actions (CSV, XLSX).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django.test import Client
from openpyxl import load_workbook

from poolsite.batches.batch_import import batch_import
from poolsite.batches.models import Batch, PurchaseOrder
from tests.poolsite.base import BaseTestCase

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
UPLOADED_HEADERS = ["@SUM(1+1)*cmd|' /C calc'!A0", "+cmd", "-2+3"]
# Names no upload can give (the import strips and refuses them), still neutralised if a
# batch ever holds them.
STORED_HEADERS = ["=1+2", "\tTAB", "\rCR"]


def _csv_cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def _xlsx_cells(data: bytes) -> list[list[str]]:
    sheet = load_workbook(io.BytesIO(data)).active
    assert sheet is not None
    formulas = [c.coordinate for row in sheet.iter_rows() for c in row if c.data_type == "f"]
    assert formulas == [], f"formula cells: {formulas}"
    return [["" if v is None else str(v) for v in row]
            for row in sheet.iter_rows(values_only=True)]


def _body(response: Any) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def _live_cells(rows: list[list[str]]) -> list[str]:
    return [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]


class ExportFormulaTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        header = ",".join(["po_number", "supplier", "amount",
                           *('"' + h.replace('"', '""') + '"' for h in UPLOADED_HEADERS)])
        data = f"{header}\nPO300001,+Acme,12.50,@x,-y,+z\n".encode()
        self.batch = batch_import(data, filename="hostile.csv", preset="demo", name="h")
        assert self.batch.extra_columns == UPLOADED_HEADERS, self.batch.extra_columns
        Batch.objects.filter(pk=self.batch.pk).update(
            extra_columns=UPLOADED_HEADERS + STORED_HEADERS)
        PurchaseOrder.objects.filter(batch=self.batch).update(
            message="=HYPERLINK(\"http://evil\")",
            extra={**PurchaseOrder.objects.get(batch=self.batch).extra,
                   "=1+2": "=1+2", "\tTAB": "\tv", "\rCR": "\rv"})
        self.client = Client()
        self.client.force_login(self.root)

    def _downloads(self) -> dict[str, list[list[str]]]:
        found: dict[str, list[list[str]]] = {}
        for fmt in ("csv", "xlsx"):
            response = self.client.get(f"/batches/{self.batch.pk}/results.{fmt}")
            assert response.status_code == 200
            body = _body(response)
            found[f"results.{fmt}"] = (_csv_cells(body.decode()) if fmt == "csv"
                                       else _xlsx_cells(body))
        ids = [str(pk) for pk in self.batch.pos.values_list("pk", flat=True)]
        for fmt in ("csv", "xlsx"):
            response = self.client.post(
                "/admin/batches/purchaseorder/",
                {"action": f"export_selected_{fmt}", "_selected_action": ids})
            assert response.status_code == 200, response.status_code
            body = _body(response)
            found[f"admin.{fmt}"] = (_csv_cells(body.decode()) if fmt == "csv"
                                     else _xlsx_cells(body))
        return found

    def test_no_cell_of_any_export_starts_like_a_formula_headers_included(self) -> None:
        for name, rows in self._downloads().items():
            assert _live_cells(rows) == [], (name, _live_cells(rows))
            header = rows[0]
            assert "'@SUM(1+1)*cmd|' /C calc'!A0" in header, (name, header)
            assert "'-2+3" in header and "'=1+2" in header, (name, header)
            values = dict(zip(header, rows[1], strict=True))
            assert values["supplier"] == "'+Acme", name
            assert values["'+cmd"] == "'-y", name
