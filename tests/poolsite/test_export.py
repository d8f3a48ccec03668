"""Results sheets round-trip, and nothing in them runs as a spreadsheet formula."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from openpyxl import load_workbook

from poolsite.batches.batch_export import csv_stream, neutralise, xlsx_bytes
from poolsite.batches.batch_import import batch_import
from poolsite.batches.models import Document, PurchaseOrder, Status
from tests.poolsite.base import BaseTestCase

HOSTILE = ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tTAB", "\rCR", "=HYPERLINK(\"x\")"]


class ExportTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.batch = self.make_batch(3)
        self.done, self.failed = self.make_history(self.batch)

    def csv_rows(self) -> list[dict[str, str]]:
        text = "".join(csv_stream(self.batch.pos.all(), self.batch.extra_columns))
        self.assertTrue(text.startswith("\ufeff"))
        return list(csv.DictReader(io.StringIO(text[1:])))

    def xlsx_rows(self) -> list[tuple]:
        data = xlsx_bytes(self.batch.pos.all(), self.batch.extra_columns)
        sheet = load_workbook(io.BytesIO(data)).active
        assert sheet is not None
        formulas = [c.coordinate for row in sheet.iter_rows() for c in row if c.data_type == "f"]
        self.assertEqual(formulas, [])
        return list(sheet.iter_rows(values_only=True))

    def test_it_neutralises_formula_cells(self) -> None:
        self.assertEqual([neutralise(v) for v in HOSTILE],
                         ["'=1+2", "'+SUM(A1)", "'-2+3", "'@cmd", "'\tTAB", "'\rCR",
                          "'=HYPERLINK(\"x\")"])
        self.assertEqual(neutralise("Acme"), "Acme")

    def test_it_neutralises_hostile_values_in_both_formats(self) -> None:
        PurchaseOrder.objects.filter(pk=self.failed.pk).update(
            supplier=HOSTILE[1], reason=HOSTILE[0], message=HOSTILE[4],
            extra={"Cost Center": HOSTILE[3]})
        row = self.csv_rows()[1]
        self.assertEqual((row["supplier"], row["reason"], row["message"], row["Cost Center"]),
                         ("'+SUM(A1)", "'=1+2", "'\tTAB", "'@cmd"))
        header, _, failed, _ = self.xlsx_rows()
        values = dict(zip(header, failed, strict=True))
        self.assertEqual((values["supplier"], values["reason"], values["Cost Center"]),
                         ("'+SUM(A1)", "'=1+2", "'@cmd"))
        self.assertEqual(values["amount"], 11.5)  # a number, not text

    def test_a_file_kept_with_a_warning_is_flagged_in_the_results(self) -> None:
        Document.objects.create(po=self.done, name="scan.pdf", size=10, sha256="ab" * 32,
                                path="x/scan.pdf", place="header",
                                warning="scan.pdf: does not start like a pdf file")
        row = self.csv_rows()[0]
        self.assertEqual(row["warnings"], "scan.pdf: does not start like a pdf file")
        header, done, *_ = self.xlsx_rows()
        self.assertEqual(dict(zip(header, done, strict=True))["warnings"],
                         "scan.pdf: does not start like a pdf file")

    def test_it_round_trips_csv(self) -> None:
        rows = self.csv_rows()
        pos = list(self.batch.pos.order_by("id"))
        self.assertEqual([(r["po_number"], r["supplier"], Decimal(r["amount"]), r["url"])
                          for r in rows],
                         [(p.po_number, p.supplier, p.amount, p.url) for p in pos])
        self.assertEqual([r["status"] for r in rows], ["COMPLETED", "FAILED", "QUEUED"])
        self.assertEqual(rows[0]["folder"], self.done.output_folder)
        # The results sheet is itself a valid upload: same POs, results kept as extras.
        text = "".join(csv_stream(self.batch.pos.all(), self.batch.extra_columns))
        again = batch_import(text.encode(), filename="results.csv", preset="demo")
        self.assertEqual(
            list(again.pos.order_by("id").values_list("po_number", "supplier", "amount", "url")),
            [(p.po_number, p.supplier, p.amount, p.url) for p in pos])
        first = again.pos.order_by("id")[0]
        self.assertEqual(first.extra["status"], "COMPLETED")
        self.assertEqual(first.status, Status.QUEUED)

    def test_it_round_trips_xlsx(self) -> None:
        header, *rows = self.xlsx_rows()
        self.assertEqual(header[:4], ("po_number", "supplier", "amount", "url"))
        pos = list(self.batch.pos.order_by("id"))
        self.assertEqual([(r[0], r[1], Decimal(str(r[2])), r[3]) for r in rows],
                         [(p.po_number, p.supplier, p.amount, p.url) for p in pos])
        self.assertEqual(rows[1][header.index("Cost Center")], "CC1")
        data = xlsx_bytes(self.batch.pos.all(), self.batch.extra_columns)
        again = batch_import(data, filename="results.xlsx", preset="demo")
        self.assertEqual(list(again.pos.order_by("id").values_list("po_number", "amount")),
                         [(p.po_number, p.amount) for p in pos])
