"""A PO's lifecycle (PurchaseOrder.objects) and the plan's transitions, on the real database.

Claims, renewals, the engine's re-queues (charged or not), releases, recovery of expired
leases, finishing, retrying and cancelling; PoolPlan.transition. Run on SQLite here and
on PostgreSQL when the suite is pointed at one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import close_old_connections
from django.utils import timezone

from poolsite.batches.lifecycle import CANCEL_REASON, CRASH_REASON
from poolsite.batches.models import Batch, PurchaseOrder, Status
from poolsite.supervisor.models import PoolPlan

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


def claimed(batch: Batch, host: str = "host-a", lease: timedelta = LEASE) -> PurchaseOrder:
    po = PurchaseOrder.objects.claim(batch.pk, host, lease)
    assert po is not None
    return po


def fresh(po: PurchaseOrder) -> PurchaseOrder:
    return PurchaseOrder.objects.get(pk=po.pk)


def in_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run `work(i)` in `count` threads at once, each with its own connection."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            start.wait(10)
            work(index)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


# -- claims ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_claims_in_order_and_charges_the_try_it_starts() -> None:
    batch = make_batch(3)
    first, second = claimed(batch), claimed(batch)
    assert (first.po_number, second.po_number) == ("PO200000", "PO200001")
    first = fresh(first)
    assert first.status == Status.RUNNING and first.leased_by == "host-a"
    assert first.attempts == 1 and first.first_attempt_at is not None
    assert first.lease_expires_at is not None and first.lease_expires_at > timezone.now()


@pytest.mark.django_db
def test_it_claims_nothing_when_nothing_is_queued() -> None:
    batch = make_batch(1)
    claimed(batch)
    assert PurchaseOrder.objects.claim(batch.pk, "h", LEASE) is None


@pytest.mark.django_db(transaction=True)
def test_it_never_hands_one_po_to_two_claimers() -> None:
    batch = make_batch(60)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claimer(index: int) -> None:
        while (po := PurchaseOrder.objects.claim(batch.pk, f"host-{index}", LEASE)):
            taken[index].append(po.po_number)

    assert not in_threads(4, claimer)
    everything = [number for numbers in taken for number in numbers]
    assert len(everything) == 60 and len(set(everything)) == 60
    assert not PurchaseOrder.objects.filter(status=Status.QUEUED).exists()
    assert set(PurchaseOrder.objects.values_list("attempts", flat=True)) == {1}


# -- a host's POs ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_renews_only_its_own_leases() -> None:
    batch = make_batch(2)
    mine = claimed(batch, "me", timedelta(seconds=1))
    theirs = claimed(batch, "them", timedelta(seconds=1))
    assert PurchaseOrder.objects.renew("me", timedelta(minutes=5)) == 1
    lease = fresh(mine).lease_expires_at
    assert lease is not None and lease > timezone.now() + timedelta(minutes=4)
    lease = fresh(theirs).lease_expires_at
    assert lease is not None and lease < timezone.now() + timedelta(minutes=1)


@pytest.mark.django_db
def test_an_engine_requeue_spends_a_retry_only_when_charged() -> None:
    batch = make_batch(1)
    po = claimed(batch, lease=timedelta(seconds=1))
    assert PurchaseOrder.objects.requeue(po.pk, "host-a", LEASE, charged=False)
    after_429 = fresh(po)
    assert (after_429.status, after_429.leased_by, after_429.attempts) == (
        Status.RUNNING, "host-a", 1)
    assert after_429.lease_expires_at is not None
    assert after_429.lease_expires_at > timezone.now() + timedelta(seconds=20)  # renewed
    assert PurchaseOrder.objects.requeue(po.pk, "host-a", LEASE, charged=True)
    assert fresh(po).attempts == 2
    # A host that lost the PO changes nothing.
    assert not PurchaseOrder.objects.requeue(po.pk, "host-b", LEASE, charged=True)
    assert fresh(po).attempts == 2


@pytest.mark.django_db
def test_a_release_gives_back_the_charge_of_a_po_never_tried() -> None:
    batch = make_batch(3)
    ahead, tried, theirs = claimed(batch), claimed(batch), claimed(batch, "them")
    assert PurchaseOrder.objects.release("host-a", [ahead.pk]) == 1
    assert PurchaseOrder.objects.release("host-a", [tried.pk], attempted=True) == 1
    assert PurchaseOrder.objects.release("host-a", [theirs.pk]) == 0  # not ours
    assert [(p.status, p.leased_by, p.lease_expires_at, p.attempts)
            for p in map(fresh, (ahead, tried))] == [
        (Status.QUEUED, "", None, 0), (Status.QUEUED, "", None, 1)]
    assert fresh(theirs).status == Status.RUNNING
    claimed(batch)
    assert PurchaseOrder.objects.release("host-a") == 1  # all it holds


@pytest.mark.django_db
def test_finish_records_the_outcome_only_for_the_host_holding_the_po() -> None:
    batch = make_batch(1)
    po = claimed(batch)
    at = timezone.now() - timedelta(seconds=5)
    assert not PurchaseOrder.objects.finish(po.pk, "host-b", Status.COMPLETED)
    assert fresh(po).status == Status.RUNNING
    assert PurchaseOrder.objects.finish(
        po.pk, "host-a", Status.PARTIAL, reason="SOME_FILES", message="1 of 2",
        output_folder="batch-1/Acme/PO200000", supplier_seen="Acme Inc", at=at)
    done = fresh(po)
    assert (done.status, done.reason, done.message, done.output_folder, done.supplier_seen,
            done.leased_by, done.lease_expires_at, done.last_attempt_at, done.attempts) == (
        Status.PARTIAL, "SOME_FILES", "1 of 2", "batch-1/Acme/PO200000", "Acme Inc", "",
        None, at, 1)
    assert not PurchaseOrder.objects.finish(po.pk, "host-a", Status.FAILED)  # once


@pytest.mark.django_db
def test_a_po_cancelled_while_running_ends_cancelled_like_a_queued_one() -> None:
    batch = make_batch(2)
    running = claimed(batch)
    assert PurchaseOrder.objects.finish(running.pk, "host-a", Status.COMPLETED,
                                        reason="", cancelled_by="olga")
    assert batch.pos.cancel(by="olga") == 1
    assert set(batch.pos.values_list("status", "reason", "message")) == {
        (Status.CANCELLED, CANCEL_REASON, "Cancelled by olga")}


# -- expired leases -------------------------------------------------------------------------
@pytest.mark.django_db
def test_it_requeues_expired_leases_and_fails_pos_out_of_attempts() -> None:
    batch = make_batch(3)
    a, b, live = claimed(batch, "dead-host"), claimed(batch, "dead-host"), claimed(batch)
    for _ in range(2):
        PurchaseOrder.objects.requeue(b.pk, "dead-host", LEASE, charged=True)
    PurchaseOrder.objects.filter(leased_by="dead-host").update(
        lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert PurchaseOrder.objects.recover_expired(max_attempts=3) == (1, 1)
    a, b = fresh(a), fresh(b)
    assert (a.status, a.attempts, a.leased_by) == (Status.QUEUED, 1, "")
    assert (b.status, b.reason, b.attempts) == (Status.FAILED, CRASH_REASON, 3)
    assert b.message == "its host stopped responding on each of 3 attempts"
    assert fresh(live).status == Status.RUNNING  # its lease runs on


@pytest.mark.django_db
def test_it_recovers_a_dead_hosts_pos_without_waiting_for_their_lease() -> None:
    batch = make_batch(2)
    dead, alive = claimed(batch, "dead"), claimed(batch, "alive")
    assert PurchaseOrder.objects.recover_expired(3, host="dead") == (1, 0)
    assert (fresh(dead).status, fresh(alive).status) == (Status.QUEUED, Status.RUNNING)


# -- operators ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_retry_gives_unsuccessful_pos_a_fresh_budget_and_leaves_the_rest() -> None:
    batch = make_batch(4)
    failed, done, running = claimed(batch), claimed(batch), claimed(batch)
    PurchaseOrder.objects.finish(failed.pk, "host-a", Status.TIMEOUT, reason="TIMEOUT")
    PurchaseOrder.objects.finish(done.pk, "host-a", Status.COMPLETED)
    assert batch.pos.retry() == 1
    again = fresh(failed)
    assert (again.status, again.attempts, again.reason, again.leased_by) == (
        Status.QUEUED, 0, "", "")
    assert (fresh(done).status, fresh(running).status) == (Status.COMPLETED, Status.RUNNING)


@pytest.mark.django_db
def test_cancel_takes_only_queued_pos() -> None:
    batch = make_batch(3)
    running = claimed(batch)
    assert batch.pos.cancel(by="olga") == 2
    assert fresh(running).status == Status.RUNNING
    assert batch.pos.cancel(by="olga") == 0


# -- the plan -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_plan_transition_bumps_the_version_once_per_change() -> None:
    before = PoolPlan.current()
    batch = make_batch(1)
    plan = PoolPlan.transition(batch=batch, state=PoolPlan.State.RUNNING, reason="")
    assert plan is not None and plan.version == before.version + 1
    stored = PoolPlan.current()
    assert (stored.version, stored.state, stored.batch_id) == (
        plan.version, PoolPlan.State.RUNNING, batch.pk)
    assert stored.updated_at >= before.updated_at

    # Conditional moves (a host's): applied only from the version and state they saw.
    assert PoolPlan.transition(from_version=before.version, state="paused") is None
    assert PoolPlan.transition(from_version=plan.version,
                               from_states=(PoolPlan.State.PAUSED,), state="idle") is None
    paused = PoolPlan.transition(from_version=plan.version,
                                 from_states=(PoolPlan.State.RUNNING,),
                                 state=PoolPlan.State.PAUSED, reason="x" * 400)
    assert paused is not None and paused.version == plan.version + 1
    assert PoolPlan.current().reason == "x" * 300


@pytest.mark.django_db
def test_a_refused_plan_transition_changes_nothing() -> None:
    before = PoolPlan.current()

    def refuse(plan: PoolPlan) -> None:
        raise RuntimeError(f"not while {plan.state}")

    with pytest.raises(RuntimeError, match="not while idle"):
        PoolPlan.transition(check=refuse, state=PoolPlan.State.RUNNING)
    with pytest.raises(TypeError, match="version"):
        PoolPlan.transition(version=7)
    after = PoolPlan.current()
    assert (after.version, after.state) == (before.version, before.state)


@pytest.mark.django_db(transaction=True)
def test_hosts_moving_the_plan_from_one_version_apply_it_once() -> None:
    seen = PoolPlan.transition(state=PoolPlan.State.RUNNING)
    assert seen is not None
    won: list[int] = []

    def pause(index: int) -> None:
        if PoolPlan.transition(from_version=seen.version, state=PoolPlan.State.PAUSED,
                               reason=f"host {index}"):
            won.append(index)

    assert not in_threads(4, pause)
    assert len(won) == 1
    assert PoolPlan.current().version == seen.version + 1
