"""Model constraints and the small pieces of logic that live on the models."""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from poolsite.batches.models import (
    AppendOnlyError,
    ControlAction,
    PurchaseOrder,
    Status,
    amount_text,
)
from tests.poolsite.base import BaseTestCase


class ModelsTestCase(BaseTestCase):
    def test_it_keeps_po_numbers_unique_within_a_batch(self) -> None:
        batch = self.make_batch(1)
        with transaction.atomic(), self.assertRaises(IntegrityError):
            PurchaseOrder.objects.create(batch=batch, po_number="PO200000", supplier="B",
                                         amount=1, url="http://127.0.0.1/")
        other = self.make_batch(1, name="April")
        self.assertEqual(other.pos.get().po_number, "PO200000")  # fine in another batch

    def test_it_refuses_unknown_statuses_negative_amounts_and_empty_po_numbers(self) -> None:
        batch = self.make_batch(0)
        for fields in ({"status": "DONE"}, {"amount": Decimal("-1")}, {"po_number": ""}):
            values = {"po_number": "PO9", "amount": Decimal(1), **fields}
            with self.subTest(fields=fields), transaction.atomic(), \
                    self.assertRaises(IntegrityError):
                PurchaseOrder.objects.create(batch=batch, supplier="S", url="u", **values)

    def test_it_keeps_amounts_exact(self) -> None:
        batch = self.make_batch(0)
        po = PurchaseOrder.objects.create(batch=batch, po_number="PO1", supplier="S",
                                          url="u", amount=Decimal("12345678901.2345"))
        po.refresh_from_db()
        self.assertEqual(po.amount, Decimal("12345678901.2345"))
        self.assertEqual(amount_text(Decimal("12.5000")), "12.50")
        self.assertEqual(amount_text(Decimal("0.1250")), "0.125")

    def test_it_counts_pos_per_status(self) -> None:
        batch = self.make_batch(5)
        self.make_history(batch)
        counts = batch.status_counts()
        self.assertEqual((counts["QUEUED"], counts["COMPLETED"], counts["FAILED"]), (3, 1, 1))
        self.assertEqual(sum(counts.values()), 5)
        self.assertEqual(batch.summary(),
                         {"total": 5, "pending": 3, "succeeded": 1, "failed": 1})

    def test_it_requeues_only_unsuccessful_pos_with_fresh_retries(self) -> None:
        batch = self.make_batch(4)
        done, failed = self.make_history(batch)
        self.assertEqual(batch.pos.retry(), 1)
        failed.refresh_from_db()
        self.assertEqual((failed.status, failed.attempts, failed.reason),
                         (Status.QUEUED, 0, ""))
        done.refresh_from_db()
        self.assertEqual(done.status, Status.COMPLETED)
        self.assertEqual(failed.attempt_set.count(), 1)  # history stays

    def test_it_cancels_only_queued_pos(self) -> None:
        batch = self.make_batch(3)
        PurchaseOrder.objects.filter(po_number="PO200000").update(status=Status.RUNNING)
        self.assertEqual(batch.pos.cancel(by="alice"), 2)
        self.assertEqual(batch.status_counts()["RUNNING"], 1)
        cancelled = batch.pos.filter(status=Status.CANCELLED)
        self.assertEqual(set(cancelled.values_list("reason", "message")),
                         {("CANCELLED", "Cancelled by alice")})

    def test_it_never_edits_or_deletes_a_control_action(self) -> None:
        batch = self.make_batch(1)
        action = ControlAction.record(self.alice, ControlAction.Action.SCALE, batch=batch,
                                      arguments={"workers": 4})
        self.assertEqual((action.username, action.outcome), ("alice", "pending"))
        action.outcome = "done"
        with self.assertRaises(AppendOnlyError):
            action.save()
        with self.assertRaises(AppendOnlyError):
            action.delete()
        with self.assertRaises(AppendOnlyError):
            ControlAction.objects.all().delete()
        with self.assertRaises(ProtectedError):
            batch.delete()  # an audited batch cannot vanish with its audit trail

    def test_it_settles_an_action_once(self) -> None:
        action = ControlAction.record(self.alice, ControlAction.Action.PAUSE)
        self.assertTrue(action.settle("done", "paused", host="host-a"))
        self.assertFalse(action.settle("failed", "too late"))
        action.refresh_from_db()
        self.assertEqual((action.outcome, action.outcome_message, action.handled_by),
                         ("done", "paused", "host-a"))
        self.assertIsNotNone(action.handled_at)

    def test_it_keeps_the_username_when_the_user_goes(self) -> None:
        action = ControlAction.record(self.bob, ControlAction.Action.START)
        self.bob.delete()
        action.refresh_from_db()
        self.assertEqual((action.user, action.username), (None, "bob"))

    def test_it_uses_the_index_for_the_next_queued_po(self) -> None:
        from django.db import connection

        if connection.vendor != "sqlite":
            self.skipTest("PostgreSQL's planner scans a three-row table sequentially")
        batch = self.make_batch(3)
        plan = batch.pos.filter(status=Status.QUEUED).order_by("id").values("id")[:1].explain()
        self.assertIn("po_batch_status", plan)
