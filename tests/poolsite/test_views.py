"""Every page checks its role; the upload goes preview -> confirm; downloads are safe."""

from __future__ import annotations

import csv
import io
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import StreamingHttpResponse
from django.test import Client, override_settings
from django.urls import reverse

from poolsite.batches.models import Attempt, Batch, ControlAction, Document, Status
from tests.poolsite.base import PNG, BaseTestCase

GOOD_CSV = b"PO Number,Supplier,Amount,Cost Center\nPO200001,Acme,12.50,CC1\nPO200002,Globex,3,\n"


def streamed(response: object) -> bytes:
    """The body of a streamed response (documents, evidence, ZIP)."""
    assert isinstance(response, StreamingHttpResponse), type(response)
    return b"".join(response.streaming_content)  # type: ignore[arg-type]


class PermissionsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.batch = self.make_batch(3)
        self.done, self.failed = self.make_history(self.batch)
        self.document = Document.objects.get()
        self.attempt = Attempt.objects.get(po=self.failed)

    def viewer_urls(self) -> list[str]:
        b, d, a = self.batch.pk, self.document.pk, self.attempt.pk
        return [
            reverse("batch_list"), reverse("batch_detail", args=[b]),
            reverse("po_detail", args=[self.done.pk]), reverse("batch_export", args=[b, "csv"]),
            reverse("batch_export", args=[b, "xlsx"]), reverse("batch_documents_zip", args=[b]),
            reverse("document_download", args=[d]), reverse("attempt_screenshot", args=[a]),
            reverse("attempt_html", args=[a]),
        ]

    def operator_urls(self) -> list[tuple[str, str]]:
        b, po = self.batch.pk, self.failed.pk
        return [
            ("get", reverse("batch_upload")), ("post", reverse("batch_upload")),
            ("post", reverse("batch_confirm")), ("post", reverse("batch_retry_failed", args=[b])),
            ("post", reverse("po_retry", args=[po])), ("post", reverse("po_cancel", args=[po])),
        ]

    def test_it_sends_anonymous_visitors_to_the_login_page(self) -> None:
        urls = self.viewer_urls() + [url for _, url in self.operator_urls()]
        for url in urls:
            with self.subTest(url=url):
                response = self.client.get(url)
                self.assertEqual(response.status_code, 302)
                self.assertTrue(response["Location"].startswith("/accounts/login/"))

    def test_it_has_a_login_page(self) -> None:
        response = self.client.get("/accounts/login/?next=/batches/")
        self.assertContains(response, 'name="next" value="/batches/"')
        self.assertContains(response, 'id="id_password"')

    def test_it_forbids_everything_to_a_user_without_a_role(self) -> None:
        self.client.force_login(self.charlie)
        for url in self.viewer_urls():
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 403)
        for method, url in self.operator_urls():
            with self.subTest(url=url):
                self.assertEqual(getattr(self.client, method)(url).status_code, 403)

    def test_it_lets_a_viewer_see_and_download_but_not_control(self) -> None:
        self.client.force_login(self.bob)
        for url in self.viewer_urls():
            with self.subTest(url=url):
                self.assertEqual(self.client.get(url).status_code, 200)
        for method, url in self.operator_urls():
            with self.subTest(url=url):
                self.assertEqual(getattr(self.client, method)(url).status_code, 403)
        self.assertFalse(ControlAction.objects.exists())
        self.failed.refresh_from_db()
        self.assertEqual(self.failed.status, Status.FAILED)

    def test_it_shows_a_viewer_no_control(self) -> None:
        self.client.force_login(self.bob)
        pages = [reverse("batch_list"), reverse("batch_detail", args=[self.batch.pk]),
                 reverse("po_detail", args=[self.failed.pk]),
                 reverse("po_detail", args=[self.batch.pos.order_by("-id")[0].pk])]
        for url in pages:
            with self.subTest(url=url):
                html = self.client.get(url).content.decode()
                for control in ("retry-failed", "/retry/", "/cancel/", "Upload a batch"):
                    self.assertNotIn(control, html)

    def test_it_shows_an_operator_the_controls(self) -> None:
        self.client.force_login(self.alice)
        html = self.client.get(reverse("batch_detail", args=[self.batch.pk])).content.decode()
        self.assertIn("Retry 1 failed PO", html)
        self.assertIn("Upload a batch", html)
        html = self.client.get(reverse("po_detail", args=[self.failed.pk])).content.decode()
        self.assertIn(reverse("po_retry", args=[self.failed.pk]), html)

    def test_a_po_page_shows_where_its_attempt_looked_for_files(self) -> None:
        Attempt.objects.filter(po=self.done).update(
            sources=[{"page": "po", "name": "header", "seen": True, "files": 0, "problem": ""},
                     {"page": "po", "name": "comments", "seen": False, "files": 0,
                      "problem": "its container did not appear within 15 s"}],
            blocked_requests=["http://127.0.0.3/pendo.js", "http://127.0.0.4/nr.js"])
        Document.objects.filter(po=self.done).update(place="comments", warning="<not a pdf>")
        self.client.force_login(self.bob)
        html = self.client.get(reverse("po_detail", args=[self.done.pk])).content.decode()
        self.assertIn("po header: 0 files; po comments: its container did not appear", html)
        self.assertIn("2 third-party requests refused", html)
        self.assertIn("PO page (comments)", html)
        self.assertIn("&lt;not a pdf&gt;", html)  # escaped like every other value

    def test_it_lets_operators_and_superusers_control(self) -> None:
        for user in (self.alice, self.root):
            with self.subTest(user=user.username):
                self.client.force_login(user)
                self.assertEqual(self.client.get(reverse("batch_upload")).status_code, 200)
                url = reverse("batch_retry_failed", args=[self.batch.pk])
                self.assertRedirects(self.client.post(url), self.batch.get_absolute_url())
        action = ControlAction.objects.filter(action="retry_failed").order_by("id").first()
        assert action is not None
        self.assertEqual((action.username, action.outcome, action.outcome_message),
                         ("alice", "done", "1 PO(s) queued again"))
        self.failed.refresh_from_db()
        self.assertEqual(self.failed.status, Status.QUEUED)


class UploadTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)
        self.site = self.make_site()

    def post_file(self, data: bytes, name: str = "march.csv", **fields: str):
        upload = SimpleUploadedFile(name, data, content_type="text/csv")
        return self.client.post(reverse("batch_upload"),
                                {"file": upload, "site": "Demo site", **fields})

    def test_it_previews_then_creates_the_batch_on_confirm(self) -> None:
        response = self.post_file(GOOD_CSV, name="march.csv", name_="x")
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "<strong>2</strong> POs from 2 suppliers")
        self.assertContains(response, "Cost Center")
        self.assertContains(response, "PO200002")
        self.assertFalse(Batch.objects.exists())  # nothing stored before the confirmation
        confirm = response.context["confirm"]
        data = {name: confirm[name].value() or "" for name in confirm.fields}
        data["name"] = "March"
        response = self.client.post(reverse("batch_confirm"), data)
        batch = Batch.objects.get()
        self.assertRedirects(response, batch.get_absolute_url())
        self.assertEqual((batch.name, batch.po_count, batch.uploaded_by), ("March", 2, self.alice))
        self.assertEqual(ControlAction.objects.get().action, "upload")
        again = self.client.post(reverse("batch_confirm"), data, follow=True)  # double click
        self.assertContains(again, "already created from this file")
        self.assertEqual(Batch.objects.count(), 1)
        response = self.client.get(reverse("batch_list"))
        self.assertContains(response, "March")
        self.assertContains(response, '<td class="num">2</td>', count=2)  # POs and pending

    def test_it_forgets_previews_nobody_confirmed(self) -> None:
        import os

        self.post_file(GOOD_CSV)
        uploads = self.tmp / "uploads"
        (stale,) = uploads.iterdir()
        os.utime(stale, (0, 0))
        self.post_file(GOOD_CSV.replace(b"PO200002", b"PO200003"))
        self.assertEqual(len(list(uploads.iterdir())), 1)
        self.assertFalse(stale.exists())

    def test_it_lists_every_problem_and_stores_nothing(self) -> None:
        data = b"po_number,supplier,amount\nPO1,Acme,12x\nPO1,,1\n"
        response = self.post_file(data)
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "3 problems", status_code=400)
        self.assertContains(response, "row 2, column C (amount), value &#x27;12x&#x27;",
                            status_code=400)
        self.assertContains(response, "duplicate PO number", status_code=400)
        self.assertFalse(Batch.objects.exists())
        self.assertFalse((self.tmp / "uploads").exists() and any((self.tmp / "uploads").iterdir()))

    def test_it_refuses_a_file_over_the_size_limit(self) -> None:
        with override_settings(POOL_MAX_UPLOAD_BYTES=100):
            response = self.post_file(GOOD_CSV * 3)
        self.assertContains(response, "over the limit of 100 bytes", status_code=400)
        self.assertFalse(Batch.objects.exists())

    def test_it_stops_reading_an_upload_over_the_limit(self) -> None:
        with override_settings(POOL_MAX_UPLOAD_BYTES=1000):
            response = self.post_file(GOOD_CSV * 200)
        self.assertContains(response, "over the limit of 1,000 bytes", status_code=400)
        with override_settings(POOL_MAX_UPLOAD_BYTES=10):
            response = self.client.post(reverse("batch_upload"), {"x": "y"},
                                        CONTENT_LENGTH=str(200 * 1024))
        self.assertContains(response, "over the limit of 10 bytes", status_code=400)
        self.assertFalse(Batch.objects.exists())

    def test_it_still_checks_the_csrf_token_on_upload(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        upload = SimpleUploadedFile("a.csv", GOOD_CSV)
        response = client.post(reverse("batch_upload"), {"file": upload, "site": "Demo site"})
        self.assertEqual(response.status_code, 403)

    def test_it_refuses_a_tampered_confirmation(self) -> None:
        data = {"token": "0" * 64, "filename": "x.csv", "site": "Demo site"}
        response = self.client.post(reverse("batch_confirm"), data, follow=True)
        self.assertContains(response, "The uploaded file is gone")
        response = self.client.post(reverse("batch_confirm"), {"token": "../../etc"},
                                    follow=True)
        self.assertContains(response, "expired or was tampered with")
        self.assertFalse(Batch.objects.exists())


class PagesTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.batch = self.make_batch(4)
        self.done, self.failed = self.make_history(self.batch)
        self.client.force_login(self.bob)

    def test_it_filters_the_pos_of_a_batch(self) -> None:
        url = reverse("batch_detail", args=[self.batch.pk])
        response = self.client.get(url, {"status": "FAILED"})
        self.assertEqual([po.po_number for po in response.context["page"]], ["PO200001"])
        response = self.client.get(url, {"q": "0003"})
        self.assertEqual([po.po_number for po in response.context["page"]], ["PO200003"])
        response = self.client.get(url, {"supplier": "globex"})
        self.assertEqual(len(response.context["page"]), 0)
        self.assertContains(self.client.get(url), "Completed: 1")

    def test_it_shows_attempts_documents_and_screenshots(self) -> None:
        response = self.client.get(reverse("po_detail", args=[self.failed.pk]))
        attempt = Attempt.objects.get(po=self.failed)
        self.assertContains(response, f'src="{reverse("attempt_screenshot", args=[attempt.pk])}"')
        self.assertContains(response, "http_500")
        response = self.client.get(reverse("po_detail", args=[self.done.pk]))
        self.assertContains(response, reverse("document_download",
                                              args=[Document.objects.get().pk]))

    def test_it_serves_documents_and_evidence_safely(self) -> None:
        document = Document.objects.get()
        response = self.client.get(reverse("document_download", args=[document.pk]))
        self.assertEqual(streamed(response), b"%PDF-1.4 invoice")
        self.assertIn("attachment", response["Content-Disposition"])
        attempt = Attempt.objects.get(po=self.failed)
        response = self.client.get(reverse("attempt_screenshot", args=[attempt.pk]))
        self.assertEqual((response["Content-Type"], streamed(response)),
                         ("image/png", PNG))
        response = self.client.get(reverse("attempt_html", args=[attempt.pk]))
        self.assertTrue(response["Content-Type"].startswith("text/plain"))
        self.assertIn("attachment", response["Content-Disposition"])

    def test_it_refuses_paths_outside_the_output_root(self) -> None:
        (self.tmp / "secret.txt").write_text("secret")
        for path in ("../secret.txt", "/etc/passwd", "", "batch-1/../../secret.txt"):
            Document.objects.filter(pk=Document.objects.get().pk).update(path=path)
            with self.subTest(path=path):
                url = reverse("document_download", args=[Document.objects.get().pk])
                self.assertEqual(self.client.get(url).status_code, 404)

    def test_it_streams_a_zip_of_the_documents(self) -> None:
        response = self.client.get(reverse("batch_documents_zip", args=[self.batch.pk]))
        self.assertTrue(response.streaming)
        archive = zipfile.ZipFile(io.BytesIO(streamed(response)))
        document = Document.objects.get()
        self.assertEqual(archive.namelist(), [document.path])
        self.assertEqual(archive.read(document.path), b"%PDF-1.4 invoice")

    def test_it_names_zip_entries_by_their_resolved_path(self) -> None:
        document = Document.objects.get()
        folder, name = document.path.rsplit("/", 1)
        Document.objects.filter(pk=document.pk).update(path=f"{folder}/../{folder.split('/')[-1]}/{name}")
        response = self.client.get(reverse("batch_documents_zip", args=[self.batch.pk]))
        archive = zipfile.ZipFile(io.BytesIO(streamed(response)))
        self.assertEqual(archive.namelist(), [document.path])

    def test_it_exports_results_as_csv(self) -> None:
        response = self.client.get(reverse("batch_export", args=[self.batch.pk, "csv"]))
        text = streamed(response).decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        self.assertEqual(len(rows), 4)
        self.assertEqual((rows[0]["status"], rows[0]["files"], rows[0]["file_names"]),
                         ("COMPLETED", "1", "invoice.pdf"))
        self.assertEqual((rows[1]["reason"], rows[1]["Cost Center"]), ("http_500", "CC1"))
        self.assertEqual(self.client.get(
            reverse("batch_export", args=[self.batch.pk, "pdf"])).status_code, 404)
