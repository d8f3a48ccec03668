"""The shared base case: personas for each role and a batch with history in it."""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.contrib.auth.models import Group, User
from django.test import TestCase, override_settings
from django.utils import timezone

from poolsite.batches.models import Attempt, Batch, Document, PurchaseOrder, Run, Site, Status

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18"
       b"\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


class BaseTestCase(TestCase):
    """Alice operates, Bob views, Charlie has an account but no role, Root is superuser."""

    def setUp(self) -> None:
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="poolsite-test-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.output = self.tmp / "output"
        self.output.mkdir()
        folders = override_settings(DATA_DIR=self.tmp, OUTPUT_DIR=self.output)
        folders.enable()
        self.addCleanup(folders.disable)

        self.alice = self._user("alice", "operators")
        self.bob = self._user("bob", "viewers")
        self.charlie = self._user("charlie", None)
        self.root = User.objects.create_superuser("root", "root@example.org", None)

    def _user(self, name: str, group: str | None) -> User:
        # No password: tests sign in with force_login, and hashing costs 0.3 s a user.
        user = User.objects.create_user(name, f"{name}@example.org")
        if group:
            user.groups.add(Group.objects.get(name=group))
        return user

    def make_site(self, name: str = "Demo site", preset: str = "demo",
                  base_url: str = "http://127.0.0.1:8001",
                  extra_hosts: tuple[str, ...] = ()) -> Site:
        return Site.objects.create(name=name, preset=preset, base_url=base_url,
                                   extra_hosts=list(extra_hosts))

    def make_batch(self, n: int = 3, **fields: object) -> Batch:
        batch = Batch.objects.create(
            name=str(fields.pop("name", "March POs")), uploaded_by=self.alice,
            source_name="march.csv", source_sha256="ab" * 32, site_preset="demo",
            po_count=n, extra_columns=["Cost Center"], **fields)
        PurchaseOrder.objects.bulk_create(
            PurchaseOrder(batch=batch, row_number=i + 2, po_number=f"PO{200000 + i}",
                          supplier="Acme Office Supply", amount=Decimal("10.50") + i,
                          url=f"http://127.0.0.1:8001/order_headers/{200000 + i}",
                          extra={"Cost Center": f"CC{i}"})
            for i in range(n))
        return batch

    def make_history(self, batch: Batch) -> tuple[PurchaseOrder, PurchaseOrder]:
        """Finish the first PO with a document and fail the second with a screenshot."""
        now = timezone.now()
        run = Run.objects.create(batch=batch, started_by=self.alice, host="host-a",
                                 pool_size=2, state=Run.State.FINISHED,
                                 finished_at=now, pos_done=2, pos_per_minute=12.5,
                                 p95_seconds=3.2)
        done, failed = list(batch.pos.order_by("id")[:2])
        folder = f"{batch.output_dir_name()}/Acme/{done.po_number}"
        (self.output / folder).mkdir(parents=True)
        (self.output / folder / "invoice.pdf").write_bytes(b"%PDF-1.4 invoice")
        PurchaseOrder.objects.filter(pk=done.pk).update(
            status=Status.COMPLETED, attempts=1, output_folder=folder,
            first_attempt_at=now, last_attempt_at=now)
        attempt = Attempt.objects.create(po=done, run=run, worker_id="w1", host="host-a",
                                         status=Status.COMPLETED, duration=1.5,
                                         finished_at=now)
        Document.objects.create(po=done, attempt=attempt, name="invoice.pdf", size=16,
                                sha256="cd" * 32, content_type="application/pdf",
                                path=f"{folder}/invoice.pdf")
        evidence = f"{batch.output_dir_name()}/evidence/{failed.po_number}"
        (self.output / evidence).mkdir(parents=True)
        (self.output / evidence / "shot.png").write_bytes(PNG)
        (self.output / evidence / "page.html").write_text("<script>alert(1)</script>")
        PurchaseOrder.objects.filter(pk=failed.pk).update(
            status=Status.FAILED, reason="http_500", message="server error", attempts=3,
            first_attempt_at=now - timedelta(minutes=2), last_attempt_at=now)
        Attempt.objects.create(po=failed, run=run, worker_id="w2", status=Status.FAILED,
                               reason="http_500", message="server error", duration=0.7,
                               screenshot=f"{evidence}/shot.png",
                               html_evidence=f"{evidence}/page.html")
        done.refresh_from_db()
        failed.refresh_from_db()
        return done, failed
