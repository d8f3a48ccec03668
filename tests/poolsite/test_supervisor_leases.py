"""Claims, renewals and recovery of PO leases on the real (SQLite) database."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import close_old_connections
from django.utils import timezone

from poolsite.batches.models import Batch, PurchaseOrder, Status
from poolsite.supervisor import leases

LEASE = timedelta(seconds=30)


def make_batch(n: int, name: str = "b") -> Batch:
    batch = Batch.objects.create(name=name, source_name=f"{name}.csv", source_sha256="0" * 64,
                                 site_preset="demo", po_count=n)
    PurchaseOrder.objects.bulk_create(
        PurchaseOrder(batch=batch, row_number=i + 2, po_number=f"PO{200000 + i}",
                      supplier="Acme", url=f"http://127.0.0.1:1/order_headers/{200000 + i}",
                      amount=Decimal("10.00"))
        for i in range(n))
    return batch


@pytest.mark.django_db
def test_it_claims_in_order_and_counts_the_attempt() -> None:
    batch = make_batch(3)
    first = leases.claim_next(batch.pk, "host-a", LEASE)
    second = leases.claim_next(batch.pk, "host-a", LEASE)
    assert first is not None and second is not None
    assert (first.po_number, second.po_number) == ("PO200000", "PO200001")
    first.refresh_from_db()
    assert first.status == Status.RUNNING and first.leased_by == "host-a"
    assert first.attempts == 1 and first.first_attempt_at is not None
    assert first.lease_expires_at is not None and first.lease_expires_at > timezone.now()


@pytest.mark.django_db
def test_it_returns_none_when_nothing_is_queued() -> None:
    batch = make_batch(1)
    assert leases.claim_next(batch.pk, "h", LEASE) is not None
    assert leases.claim_next(batch.pk, "h", LEASE) is None


@pytest.mark.django_db(transaction=True)
def test_it_never_hands_one_po_to_two_claimers() -> None:
    batch = make_batch(60)
    claimed: list[list[str]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def claimer(index: int) -> None:
        try:
            while (po := leases.claim_next(batch.pk, f"host-{index}", LEASE)) is not None:
                claimed[index].append(po.po_number)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    everything = [number for numbers in claimed for number in numbers]
    assert len(everything) == 60 and len(set(everything)) == 60
    assert PurchaseOrder.objects.filter(status=Status.QUEUED).count() == 0


@pytest.mark.django_db
def test_it_requeues_expired_leases_and_fails_pos_out_of_attempts() -> None:
    batch = make_batch(2)
    a = leases.claim_next(batch.pk, "dead-host", LEASE)
    b = leases.claim_next(batch.pk, "dead-host", LEASE)
    assert a is not None and b is not None
    PurchaseOrder.objects.filter(pk=b.pk).update(attempts=3)
    PurchaseOrder.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert leases.recover_expired(max_attempts=3) == (1, 1)
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == Status.QUEUED and a.attempts == 1 and a.leased_by == ""
    assert b.status == Status.FAILED and b.reason == "CRASHED"


@pytest.mark.django_db
def test_it_renews_and_releases_only_its_own_leases() -> None:
    batch = make_batch(3)
    mine = leases.claim_next(batch.pk, "me", timedelta(seconds=1))
    theirs = leases.claim_next(batch.pk, "them", timedelta(seconds=1))
    assert mine is not None and theirs is not None
    assert leases.renew("me", timedelta(minutes=5)) == 1
    mine.refresh_from_db()
    assert mine.lease_expires_at is not None
    assert mine.lease_expires_at > timezone.now() + timedelta(minutes=4)
    assert leases.release("me") == 1
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == Status.QUEUED and mine.attempts == 0
    assert theirs.status == Status.RUNNING
