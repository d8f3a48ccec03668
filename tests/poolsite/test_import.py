"""Good files of every accepted shape become whole batches with exact values."""

from __future__ import annotations

import io
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import call_command
from django.test import TestCase, override_settings

from poolsite.batches import batch_import as importer
from poolsite.batches.batch_import import (
    ImportRefused,
    batch_import,
    batch_import_rows,
    parse_amount,
    parse_upload,
)
from poolsite.batches.management.commands.import_batch import ProgressBar
from poolsite.batches.models import Batch, PurchaseOrder, Status
from tests.poolsite.badfiles import xlsx

ROWS = "PO Number,Vendor,Total,Cost Center,Region\nPO200001,Acme,\"1,234.50\",CC1,EMEA\n" \
       "PM200002,Café Noir,12,,APAC\n"


class ImportTestCase(TestCase):
    def test_it_imports_a_csv_with_aliases_and_extras(self) -> None:
        batch = batch_import(ROWS.encode(), filename="march.csv", preset="demo")
        self.assertEqual(batch.name, "march")
        self.assertEqual(batch.po_count, 2)
        self.assertEqual(batch.extra_columns, ["Cost Center", "Region"])
        first, second = batch.pos.order_by("row_number")
        self.assertEqual((first.row_number, first.po_number, first.supplier),
                         (2, "PO200001", "Acme"))
        self.assertEqual(first.amount, Decimal("1234.50"))
        self.assertEqual(first.extra, {"Cost Center": "CC1", "Region": "EMEA"})
        self.assertEqual(first.status, Status.QUEUED)
        self.assertEqual(first.url, "http://127.0.0.1:8001/order_headers/200001")
        self.assertEqual(second.url, "http://127.0.0.1:8001/order_headers/200002")
        self.assertEqual(second.supplier, "Café Noir")
        self.assertEqual(second.extra, {"Region": "APAC"})

    def test_it_builds_urls_from_the_configured_demo_site(self) -> None:
        with override_settings(POOL_DEMO_URL="http://127.0.0.1:9999/"):
            batch = batch_import(ROWS.encode(), filename="a.csv", preset="demo")
        self.assertEqual(batch.site_base_url, "http://127.0.0.1:9999")
        self.assertTrue(batch.pos.order_by("id")[0].url.startswith("http://127.0.0.1:9999/order_"))

    def test_it_reads_every_delimiter_and_encoding(self) -> None:
        text = "po_number{d}supplier{d}amount\nPO1{d}Café{d}1.5\n"
        cases = [
            (text.format(d=";").encode("utf-8-sig"), "UTF-8 (BOM), semicolon"),
            (text.format(d="\t").encode("utf-8"), "UTF-8, tab"),
            (text.format(d="|").encode("utf-8"), "UTF-8, pipe"),
            (text.format(d=",").encode("cp1252"), "Windows-1252, comma"),
            (text.format(d=",").replace("Café", "Caf\u00e9\x81").encode("latin-1"), "Latin-1"),
            (text.format(d=",").encode("utf-16"), "UTF-16, comma"),
            (text.format(d=",").replace("\n", "\r\n").encode(), "UTF-8, comma"),
        ]
        for data, encoding in cases:
            with self.subTest(encoding=encoding):
                upload = parse_upload(data, filename="x.csv", preset="demo")
                self.assertTrue(upload.ok, upload.problems)
                self.assertTrue(upload.encoding.startswith(encoding), upload.encoding)
                self.assertTrue(upload.rows[0].supplier.startswith("Café"))
                self.assertEqual(upload.rows[0].amount, Decimal("1.5"))

    def test_it_imports_the_first_or_a_named_sheet_of_an_xlsx(self) -> None:
        from openpyxl import Workbook

        workbook = Workbook()
        first = workbook.active
        assert first is not None
        first.append(["notes"])
        first.append(["this sheet is a cover page"])
        second = workbook.create_sheet("Orders")
        second.append(["PO_NUMBER", "SUPPLIER", "AMOUNT", "Due"])
        second.append([15262984, "Acme", 1234.56, None])
        second.append(["PO15262985", "Globex", 7, "2026-01-31"])
        out = io.BytesIO()
        workbook.save(out)
        batch = batch_import(out.getvalue(), filename="orders.xlsx", sheet="Orders",
                             preset="demo")
        pos = list(batch.pos.order_by("row_number"))
        self.assertEqual([p.po_number for p in pos], ["15262984", "PO15262985"])
        self.assertEqual(pos[0].amount, Decimal("1234.56"))
        self.assertEqual(pos[1].amount, Decimal("7"))
        self.assertEqual(pos[1].extra, {"Due": "2026-01-31"})
        with self.assertRaises(ImportRefused):  # the cover page has no PO columns
            batch_import(out.getvalue(), filename="orders.xlsx", preset="demo")

    def test_it_skips_blank_rows_and_strips_cells(self) -> None:
        data = xlsx([["PO Number", "Supplier", "Amount"], [None, None, None],
                     ["  PO1 ", " Acme ", " 5 "], [], ["PO2", "Acme", 6]])
        upload = parse_upload(data, filename="x.xlsx", preset="demo")
        self.assertTrue(upload.ok, upload.problems)
        self.assertEqual([(r.row, r.po_number, r.supplier) for r in upload.rows],
                         [(3, "PO1", "Acme"), (5, "PO2", "Acme")])

    def test_it_reports_one_problem_per_cell(self) -> None:
        data = xlsx([["PO Number", "Supplier", "Amount"], ["PO1", "Acme", "=SUM(1,2)"]])
        upload = parse_upload(data, filename="x.xlsx", preset="demo")
        self.assertEqual([str(p) for p in upload.problems],
                         ["row 2, column C (Amount), value '=SUM(1,2)': looks like a "
                          "spreadsheet formula: import values only"])

    def test_it_keeps_explicit_allowed_urls(self) -> None:
        data = b"po_number,supplier,amount,url\nPO1,A,1,https://acme.coupahost.com/order_headers/1\n"
        batch = batch_import(data, filename="c.csv", preset="coupa")
        self.assertEqual(batch.pos.get().url, "https://acme.coupahost.com/order_headers/1")

    def test_it_imports_rows_given_as_dicts(self) -> None:
        rows = [{"po_number": "PO1", "supplier": "Acme", "amount": Decimal("0.10"),
                 "url": "http://127.0.0.1:8001/order_headers/1", "Level 1": "Ops"}]
        batch = batch_import_rows(rows, name="demo sample")
        self.assertEqual(batch.name, "demo sample")
        po = batch.pos.get()
        self.assertEqual((po.amount, po.extra), (Decimal("0.10"), {"Level 1": "Ops"}))

    def test_it_imports_the_demo_catalog(self) -> None:
        from poolsite.demo_erp import catalog

        base = "http://127.0.0.1:8001"
        rows = catalog.demo_batch(base, 40) + catalog.special_batch(base)
        batch = batch_import_rows(rows, name="sample")
        self.assertEqual(batch.po_count, len(rows))
        po = batch.pos.get(po_number=catalog.HOSTILE_NAMES)
        demo = catalog.find(catalog.HOSTILE_NAMES)
        assert demo is not None
        self.assertEqual(po.amount, demo.amount)

    def test_it_stores_nothing_when_the_insert_fails_half_way(self) -> None:
        data = ("po_number,supplier,amount\n"
                + "".join(f"PO{i},Acme,1\n" for i in range(4500))).encode()
        real_insert = importer._insert_pos
        calls = []

        def failing_insert(batch: Batch, rows: list) -> None:
            calls.append(len(rows))
            if len(calls) == 2:
                raise RuntimeError("disk full")
            real_insert(batch, rows)

        with mock.patch.object(importer, "_insert_pos", failing_insert), \
                self.assertRaises(RuntimeError):
            batch_import(data, filename="x.csv", preset="demo")
        self.assertEqual(calls, [2000, 2000])
        self.assertFalse(Batch.objects.exists())
        self.assertFalse(PurchaseOrder.objects.exists())

    def test_it_reports_progress(self) -> None:
        seen = []
        data = ("po_number,supplier,amount\n"
                + "".join(f"PO{i},Acme,1\n" for i in range(2500))).encode()
        batch_import(data, filename="x.csv", preset="demo",
                     progress=lambda phase, done, total: seen.append((phase, done, total)))
        self.assertIn(("save", 2500, 2500), seen)
        self.assertIn("check", {phase for phase, _, _ in seen})

    def test_it_draws_a_progress_bar(self) -> None:
        out = io.StringIO()
        bar = ProgressBar(out, width=10)
        bar("save", 5, 10)
        bar.close()
        self.assertEqual(out.getvalue(), "\rsaving    [#####.....]       5/10\n")

    def test_it_imports_from_the_command_line(self) -> None:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "march.csv"
            path.write_bytes(ROWS.encode())
            out = io.StringIO()
            call_command("import_batch", str(path), "--check", stdout=out)
            self.assertIn("2 POs, no problems (nothing stored)", out.getvalue())
            self.assertFalse(Batch.objects.exists())
            call_command("import_batch", str(path), "--name", "March", stdout=out)
        batch = Batch.objects.get()
        self.assertEqual((batch.name, batch.po_count, batch.source_name),
                         ("March", 2, "march.csv"))


@pytest.mark.parametrize("raw, expected", [
    ("1234.56", Decimal("1234.56")), ("1,234,567.5", Decimal("1234567.5")),
    ("$ 12", Decimal("12")), ("0", Decimal("0")), (7, Decimal("7")),
    (0.1, Decimal("0.1")), (0.1 + 0.2, Decimal("0.3000")), ("€1.5", Decimal("1.5")),
])
def test_it_parses_amounts_as_decimals(raw: object, expected: Decimal) -> None:
    amount, why = parse_amount(raw)
    assert why == ""
    assert amount == expected
    assert isinstance(amount, Decimal)


@pytest.mark.parametrize("raw", ["1,23", "12.3.4", "1 2 3 x", "inf", "-0.5", float("nan"),
                                 "(5.00)", "0x10", True])
def test_it_refuses_odd_amounts(raw: object) -> None:
    amount, why = parse_amount(raw)
    assert amount is None and why
