"""Files the way Coupa users have them: PO_Data sheets, their spellings, optional columns,
and the results back in their own workbook (or CSV)."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.urls import reverse

from pool_core.events import PORecord
from pool_core.messages import POStatus
from poolsite.batches import batch_export
from poolsite.batches.batch_import import batch_import, parse_upload
from poolsite.batches.models import Batch, BatchSource, Document, PurchaseOrder, Status
from poolsite.batches.workbook_export import STATUS_COLUMNS
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.recording import Recorder
from tests.poolsite.base import BaseTestCase


def workbook(sheets: list[tuple[str, list[Any]]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    first = book.active
    assert first is not None
    book.remove(first)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def read_workbook(data: bytes) -> Any:
    from openpyxl import load_workbook

    return load_workbook(io.BytesIO(data))


COVER = [["Quarterly PO pull"], ["Owner", "Ana"], ["Total", "=SUM(1,2)"]]
PO_DATA = [["PO_NUMBER"], ["PO200001"], ["PO200002"], ["PO200003"]]


class WorkbookImportTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.site = self.make_site()

    def test_it_imports_a_po_data_sheet_with_only_po_number(self) -> None:
        data = workbook([("Cover", COVER), ("po_data", PO_DATA), ("Lookup", [["a", "b"]])])
        batch = batch_import(data, filename="pull.xlsx", site=self.site)
        self.assertEqual((batch.po_count, batch.source_sheet, batch.site), (3, "po_data",
                                                                            self.site))
        self.assertEqual((batch.site_preset, batch.site_base_url),
                         ("demo", "http://127.0.0.1:8001"))
        po = batch.pos.order_by("row_number").first()
        assert po is not None
        self.assertEqual((po.row_number, po.po_number, po.supplier, po.amount),
                         (2, "PO200001", "", None))
        self.assertEqual(po.url, "http://127.0.0.1:8001/order_headers/200001")
        source = BatchSource.objects.get(batch=batch)
        self.assertEqual((source.kind, bytes(source.data)), ("xlsx", data))

    def test_it_imports_it_through_the_command_with_a_site_name(self) -> None:
        path = self.tmp / "pull.xlsx"
        path.write_bytes(workbook([("Cover", COVER), ("PO_Data", PO_DATA)]))
        out = io.StringIO()
        call_command("import_batch", str(path), "--site", "Demo site", stdout=out)
        batch = Batch.objects.get()
        self.assertEqual((batch.site, batch.po_count, batch.source_sheet),
                         (self.site, 3, "PO_Data"))
        self.assertIn("3 POs for site Demo site", out.getvalue())

    def test_it_imports_it_through_the_upload_form(self) -> None:
        self.client.force_login(self.alice)
        data = workbook([("Cover", COVER), ("PO_Data", PO_DATA)])
        upload = SimpleUploadedFile("pull.xlsx", data)
        response = self.client.post(reverse("batch_upload"),
                                    {"file": upload, "site": "Demo site"})
        self.assertContains(response, "no supplier column")
        confirm = response.context["confirm"]
        fields = {name: confirm[name].value() or "" for name in confirm.fields}
        self.client.post(reverse("batch_confirm"), fields)
        batch = Batch.objects.get()
        self.assertEqual((batch.po_count, batch.source_sheet, batch.site),
                         (3, "PO_Data", self.site))

    def test_it_still_reads_the_first_sheet_or_the_one_named(self) -> None:
        data = workbook([("Orders", [["PO Number"], ["PO1"]]), ("Other", [["po"], ["PO9"]])])
        self.assertEqual(parse_upload(data, filename="a.xlsx", site=self.site).sheet, "Orders")
        named = parse_upload(data, filename="a.xlsx", site=self.site, sheet="Other")
        self.assertEqual([r.po_number for r in named.rows], ["PO9"])

    def test_it_accepts_the_spellings_users_have(self) -> None:
        cases = [
            ("PO_NUMBER,SUPPLIER_NAME,PO_AMOUNT", {"po_number", "supplier", "amount"}),
            ("PO Number,Supplier Name,Amount", {"po_number", "supplier", "amount"}),
            ("po number,Supplier,PO Total", {"po_number", "supplier", "amount"}),
            ("PO #,Vendor", {"po_number", "supplier"}),
            ("Order Number", {"po_number"}),
        ]
        for header, columns in cases:
            with self.subTest(header=header):
                values = ",".join(["PO1", "Acme", "12.50"][:header.count(",") + 1])
                upload = parse_upload(f"{header}\n{values}\n".encode(), filename="a.csv",
                                      site=self.site)
                self.assertTrue(upload.ok, upload.problems)
                self.assertEqual(set(upload.columns), columns)
                self.assertEqual(upload.rows[0].po_number, "PO1")

    def test_it_names_the_missing_po_number_column(self) -> None:
        data = workbook([("PO_Data", [["Supplier Name", "PO_AMOUNT"], ["Acme", 5]])])
        upload = parse_upload(data, filename="a.xlsx", site=self.site)
        self.assertFalse(upload.ok)
        message = str(upload.problems[0])
        self.assertIn("row 1, column po_number: required column is missing", message)
        self.assertIn("headers found: 'Supplier Name', 'PO_AMOUNT'", message)


class ResultsWorkbookTestCase(BaseTestCase):
    """The operator's workbook comes back with status beside each PO's own row."""

    def setUp(self) -> None:
        super().setUp()
        self.site = self.make_site()
        self.client.force_login(self.bob)  # viewers may download

    def finish(self, batch: Batch) -> None:
        """PO200001 completed with a file (supplier read from the page); PO200002 failed."""
        done = batch.pos.get(po_number="PO200001")
        PurchaseOrder.objects.filter(pk=done.pk).update(
            status=Status.COMPLETED, output_folder="batch-1/Globex/PO200001",
            supplier_seen="Globex", attempts=1)
        Document.objects.create(po=done, name="invoice.pdf", size=3, sha256="0" * 64,
                                path="batch-1/Globex/PO200001/invoice.pdf")
        batch.pos.filter(po_number="PO200002").update(
            status=Status.FAILED, reason="HTTP_500", message="=HYPERLINK(\"http://evil\")",
            attempts=3)

    def test_it_adds_status_columns_to_the_po_sheet_only(self) -> None:
        po_data = [["PO_NUMBER", "Cost Center", "Memo"], ["PO200001", "CC1", "rush"],
                   [None], ["PO200002", "CC2", None], ["PO200003", None, "late"]]
        data = workbook([("Cover", COVER), ("PO_Data", po_data), ("Lookup", [["x", 1]])])
        batch = batch_import(data, filename="pull.xlsx", site=self.site)
        self.finish(batch)
        response = self.client.get(reverse("batch_results_workbook", args=[batch.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertIn('filename="pull-results.xlsx"', response["Content-Disposition"])
        book = read_workbook(response.content)
        self.assertEqual(book.sheetnames, ["Cover", "PO_Data", "Lookup"])
        cover = book["Cover"]
        self.assertEqual([[c.value for c in row] for row in cover.iter_rows()],
                         [["Quarterly PO pull", None], ["Owner", "Ana"], ["Total", "=SUM(1,2)"]])
        self.assertEqual(book["Lookup"]["A1"].value, "x")
        sheet = book["PO_Data"]
        rows = [[c.value for c in row] for row in sheet.iter_rows()]
        self.assertEqual(rows[0], ["PO_NUMBER", "Cost Center", "Memo", *STATUS_COLUMNS])
        self.assertEqual(rows[1][:3], ["PO200001", "CC1", "rush"])
        self.assertEqual(rows[1][3:], ["COMPLETED", None, None, "invoice.pdf", None,
                                       "batch-1/Globex/PO200001", "Globex"])
        self.assertEqual(rows[2], [None] * 10)  # the blank row stays blank
        self.assertEqual(rows[3][3:6], ["FAILED", "HTTP_500", "'=HYPERLINK(\"http://evil\")"])
        self.assertEqual(rows[4][:4], ["PO200003", None, "late", "QUEUED"])
        # Uploaded again (to retry), the results get their columns rewritten, not repeated.
        again = batch_import(response.content, filename="pull-results.xlsx", site=self.site,
                             name="again")
        second = self.client.get(reverse("batch_results_workbook", args=[again.pk]))
        header = [c.value for c in read_workbook(second.content)["PO_Data"][1]]
        self.assertEqual(header, ["PO_NUMBER", "Cost Center", "Memo", *STATUS_COLUMNS])

    def test_it_returns_a_csv_with_the_original_columns_and_status(self) -> None:
        text = "PO Number;Region;Note\nPO200001;EMEA;+49 30 1234\nPO200002;APAC;\n"
        batch = batch_import(text.encode(), filename="pull.csv", site=self.site)
        self.finish(batch)
        response = self.client.get(reverse("batch_results_workbook", args=[batch.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertIn('filename="pull-results.csv"', response["Content-Disposition"])
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        self.assertEqual(rows[0], ["PO Number", "Region", "Note", *STATUS_COLUMNS])
        self.assertEqual(rows[1], ["PO200001", "EMEA", "'+49 30 1234", "COMPLETED", "", "",
                                   "invoice.pdf", "", "batch-1/Globex/PO200001", "Globex"])
        self.assertEqual(rows[2][:6], ["PO200002", "APAC", "", "FAILED", "HTTP_500",
                                       "'=HYPERLINK(\"http://evil\")"])

    def test_it_says_so_when_the_batch_has_no_stored_file(self) -> None:
        batch = self.make_batch(2)
        response = self.client.get(reverse("batch_results_workbook", args=[batch.pk]))
        self.assertEqual(response.status_code, 404)

    def test_it_links_the_download_and_shows_the_page_supplier(self) -> None:
        batch = batch_import(workbook([("PO_Data", PO_DATA)]), filename="p.xlsx",
                             site=self.site)
        self.finish(batch)
        response = self.client.get(batch.get_absolute_url())
        self.assertContains(response, "Results in your workbook")
        self.assertContains(response, "Globex")
        rows = list(batch_export.csv_rows(batch.pos.all(), []))
        self.assertEqual(rows[1][:3], ["PO200001", "Globex", ""])


@pytest.mark.django_db(transaction=True)
def test_it_records_the_supplier_read_from_the_page(tmp_path: Path) -> None:
    batch = Batch.objects.create(name="b", source_name="b.csv", source_sha256="0" * 64,
                                 site_preset="demo", po_count=1)
    po = PurchaseOrder.objects.create(batch=batch, po_number="PO7", url="http://127.0.0.1/x",
                                      amount=None, status=Status.RUNNING, leased_by="h:1")
    broadcaster = Broadcaster()
    recorder = Recorder(host="h:1", output_root=tmp_path, broadcaster=broadcaster,
                        lease=timedelta(minutes=5))
    try:
        recorder.finish(PORecord(
            key=str(po.pk), po_number="PO7", supplier="", batch="b", state="done",
            status=POStatus.COMPLETED, attempts=1, worker_id=0, supplier_seen="Globex",
            folder="batch-1/Globex/PO7", attempt_seconds=(1.0,), finished_at=time.time()))
        assert recorder.flush()
    finally:
        recorder.close()
        broadcaster.close()
    po.refresh_from_db()
    assert (po.status, po.supplier, po.supplier_seen, po.supplier_shown) == (
        "COMPLETED", "", "Globex", "Globex")
    assert po.amount is None and po.amount_text() == ""
