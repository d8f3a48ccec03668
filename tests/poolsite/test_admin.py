"""The admin answers an auditor's questions and lets nobody rewrite history."""

from __future__ import annotations

import csv
import io

from django.urls import reverse
from openpyxl import load_workbook

from poolsite.batches.models import (
    Attempt,
    ControlAction,
    Document,
    PurchaseOrder,
    Run,
    Status,
)
from tests.poolsite.base import BaseTestCase

MODELS = ("batch", "purchaseorder", "run", "attempt", "document", "controlaction")


class AdminTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.batch = self.make_batch(4)
        self.done, self.failed = self.make_history(self.batch)
        ControlAction.record(self.alice, ControlAction.Action.START, batch=self.batch,
                             run=Run.objects.get(), arguments={"workers": 2})
        self.client.force_login(self.root)

    def objects(self) -> dict[str, int]:
        return {"batch": self.batch.pk, "purchaseorder": self.failed.pk,
                "run": Run.objects.get().pk, "attempt": Attempt.objects.order_by("id")[0].pk,
                "document": Document.objects.get().pk,
                "controlaction": ControlAction.objects.get().pk}

    def test_it_renders_every_list_with_filters_search_and_dates(self) -> None:
        queries = {"batch": "?q=March&uploaded_at__year=2026",
                   "purchaseorder": "?q=PO2000&status__exact=FAILED&supplier=Acme+Office+Supply",
                   "attempt": "?q=PO200001&status__exact=FAILED",
                   "document": "?q=invoice", "run": "?state__exact=finished",
                   "controlaction": "?action__exact=start"}
        for model in MODELS:
            with self.subTest(model=model):
                url = reverse(f"admin:batches_{model}_changelist")
                response = self.client.get(url)
                self.assertEqual(response.status_code, 200)
                response = self.client.get(url + queries[model])
                self.assertEqual(response.status_code, 200)
                self.assertEqual(response.context["cl"].result_count, 1, model)

    def test_it_renders_every_change_page_with_data(self) -> None:
        for model, pk in self.objects().items():
            with self.subTest(model=model):
                response = self.client.get(reverse(f"admin:batches_{model}_change", args=[pk]))
                self.assertEqual(response.status_code, 200)
        response = self.client.get(reverse("admin:batches_purchaseorder_change",
                                           args=[self.failed.pk]))
        attempt = Attempt.objects.get(po=self.failed)
        self.assertContains(response, reverse("attempt_screenshot", args=[attempt.pk]))
        self.assertContains(response, "http_500")
        response = self.client.get(reverse("admin:batches_purchaseorder_change",
                                           args=[self.done.pk]))
        self.assertContains(response, reverse("document_download",
                                              args=[Document.objects.get().pk]))

    def test_it_shows_counts_per_batch(self) -> None:
        response = self.client.get(reverse("admin:batches_batch_changelist"))
        self.assertContains(response, '<td class="field-pending">2</td>')
        self.assertContains(response, '<td class="field-succeeded">1</td>')
        self.assertContains(response, '<td class="field-failed">1</td>')

    def test_it_lets_nobody_edit_or_delete_the_audit_trail(self) -> None:
        for model, pk in self.objects().items():
            if model in ("batch", "purchaseorder"):
                continue
            with self.subTest(model=model):
                url = reverse(f"admin:batches_{model}_change", args=[pk])
                response = self.client.post(url, {"outcome": "done", "status": "COMPLETED"})
                self.assertEqual(response.status_code, 403)
                delete = reverse(f"admin:batches_{model}_delete", args=[pk])
                self.assertEqual(self.client.post(delete, {"post": "yes"}).status_code, 403)
                add = reverse(f"admin:batches_{model}_add")
                self.assertEqual(self.client.get(add).status_code, 403)
        self.assertEqual(ControlAction.objects.get().outcome, "pending")
        self.assertEqual(Attempt.objects.count(), 2)

    def post_action(self, action: str, pks: list[int]):
        return self.client.post(reverse("admin:batches_purchaseorder_changelist"),
                                {"action": action, "_selected_action": [str(p) for p in pks]})

    def test_it_retries_selected_failed_pos(self) -> None:
        response = self.post_action("retry_selected_failed", [self.done.pk, self.failed.pk])
        self.assertEqual(response.status_code, 302)
        self.failed.refresh_from_db()
        self.done.refresh_from_db()
        self.assertEqual((self.failed.status, self.done.status),
                         (Status.QUEUED, Status.COMPLETED))
        action = ControlAction.objects.get(action="retry_failed")
        self.assertEqual((action.username, action.arguments, action.outcome),
                         ("root", {"po_numbers": [self.failed.po_number], "via": "admin"},
                          "done"))
        self.assertEqual(action.batch, self.batch)

    def test_it_refuses_a_retry_to_staff_who_may_not_operate_the_pool(self) -> None:
        # Staff with the admin's change permission but not an operator's: the same rule
        # as the dashboard's button, and the refusal is on the audit trail too.
        from django.contrib.auth.models import Permission

        self.charlie.is_staff = True
        self.charlie.save()
        self.charlie.user_permissions.add(*Permission.objects.filter(
            codename__in=("view_purchaseorder", "change_purchaseorder")))
        self.client.force_login(self.charlie)
        response = self.post_action("retry_selected_failed", [self.failed.pk])
        self.assertEqual(response.status_code, 302)
        self.failed.refresh_from_db()
        self.assertEqual(self.failed.status, Status.FAILED)
        action = ControlAction.objects.get(action="retry_failed")
        self.assertEqual((action.username, action.outcome), ("charlie", "refused"))
        self.assertIn("permission", action.outcome_message)

    def test_it_exports_selected_pos(self) -> None:
        pks = list(PurchaseOrder.objects.values_list("pk", flat=True)[:2])
        response = self.post_action("export_selected_csv", pks)
        text = b"".join(response.streaming_content).decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        self.assertEqual([r["po_number"] for r in rows], ["PO200000", "PO200001"])
        self.assertEqual(rows[0]["Cost Center"], "CC0")
        response = self.post_action("export_selected_xlsx", pks)
        sheet = load_workbook(io.BytesIO(response.content), read_only=True).active
        assert sheet is not None
        values = list(sheet.iter_rows(values_only=True))
        self.assertEqual([v[0] for v in values], ["po_number", "PO200000", "PO200001"])

    def test_it_gives_viewers_a_read_only_admin(self) -> None:
        self.bob.is_staff = True
        self.bob.save()
        self.client.force_login(self.bob)
        url = reverse("admin:batches_purchaseorder_changelist")
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200)
        self.assertNotIn("retry_selected_failed", response.content.decode())
        self.post_action("retry_selected_failed", [self.failed.pk])  # not offered to viewers
        self.failed.refresh_from_db()
        self.assertEqual(self.failed.status, Status.FAILED)
