"""The host supervisor follows operators' controls with real workers (in-process)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User

from poolsite.batches.batch_import import batch_import_rows
from poolsite.batches.models import Batch, ControlAction, PurchaseOrder, Run, Status
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from poolsite.supervisor.controls import ControlRefused, request_control
from poolsite.supervisor.host import HostSupervisor
from poolsite.supervisor.models import PoolHost, PoolPlan
from tests.conftest import user_in_role
from tests.runpool_harness import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator() -> User:
    return user_in_role("olga", "operators")


@pytest.fixture
def viewer() -> User:
    return user_in_role("victor", "viewers")


@pytest.fixture
def host(start_host: Callable[..., HostSupervisor]) -> HostSupervisor:
    return start_host()


def _batch(site: DemoSite, n: int) -> Batch:
    return batch_import_rows(catalog.demo_batch(site.base_url, n), name="controls")


def _pool_state(host: HostSupervisor) -> str:
    return str(host.pool.status) if host.pool is not None else "IDLE"


@pytest.mark.slow
def test_it_follows_start_pause_resume_scale_and_stop(
        site: DemoSite, host: HostSupervisor, operator: User) -> None:
    site.latency = 0.3
    batch = _batch(site, 40)

    request_control(operator, "start", batch=batch, size=2)
    wait_for(lambda: _pool_state(host) == "RUNNING", 60, "the pool running")
    wait_for(lambda: batch.pos.filter(status=Status.COMPLETED).exists(), 60, "a PO done")

    request_control(operator, "pause")
    wait_for(lambda: _pool_state(host) == "PAUSED", 30, "the pool paused")
    # Workers finish the PO in hand, then take no new one.
    wait_for(lambda: host.pool is not None and host.pool.get_status()["tasks_active"] == 0,
             30, "workers idle after their PO")
    done_when_paused = batch.pos.filter(status=Status.COMPLETED).count()

    request_control(operator, "resume")
    wait_for(lambda: _pool_state(host) == "RUNNING", 30, "the pool resumed")
    request_control(operator, "scale", size=3)
    wait_for(lambda: host.pool is not None and len(
        host.pool.get_status()["worker_details"]) == 3, 60, "three workers")
    wait_for(lambda: batch.pos.filter(status=Status.COMPLETED).count() > done_when_paused,
             60, "progress after resume")

    request_control(operator, "stop")
    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.IDLE and host.pool is None,
             60, "the pool stopped")
    assert not batch.pos.filter(status=Status.RUNNING).exists()  # handed back or done
    assert batch.pos.filter(status=Status.QUEUED).exists()
    actions = list(ControlAction.objects.order_by("id").values_list("action", "outcome"))
    assert actions == [("start", "done"), ("pause", "done"), ("resume", "done"),
                       ("scale", "done"), ("stop", "done")]
    assert Run.objects.get().state == Run.State.FINISHED
    assert PoolHost.objects.get(name=host.name).is_alive


def test_it_finishes_a_batch_and_goes_idle(site: DemoSite, host: HostSupervisor,
                                          operator: User) -> None:
    batch = _batch(site, 5)
    request_control(operator, "start", batch=batch)
    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.IDLE, 120, "the batch done")
    assert set(batch.pos.values_list("status", flat=True)) == {Status.COMPLETED}
    assert "finished" in PoolPlan.current().reason
    wait_for(lambda: host.pool is None, 30, "the workers stopped")


def test_it_refuses_controls_from_viewers_and_in_the_wrong_state(
        site: DemoSite, viewer: User, operator: User) -> None:
    batch = _batch(site, 1)
    with pytest.raises(ControlRefused, match="permission"):
        request_control(viewer, "start", batch=batch)
    with pytest.raises(ControlRefused, match="cannot resume while the pool is idle"):
        request_control(operator, "resume")
    with pytest.raises(ControlRefused, match="1-8"):
        request_control(operator, "scale", size=9)
    refused = ControlAction.objects.filter(outcome="refused").count()
    assert refused == 3
    assert PoolPlan.current().state == PoolPlan.State.IDLE


def test_it_retries_failed_pos_and_cancels_a_queued_one(site: DemoSite,
                                                         operator: User) -> None:
    batch = _batch(site, 3)
    first, second, _ = batch.pos.order_by("id")
    PurchaseOrder.objects.filter(pk=first.pk).update(status=Status.FAILED, attempts=3)
    retry = request_control(operator, "retry_failed", batch=batch)
    cancel = request_control(operator, "cancel_po", po=second)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts) == (Status.QUEUED, 0)
    assert second.status == Status.CANCELLED
    assert (retry.outcome, cancel.outcome) == ("done", "done")


def test_a_batch_whose_site_preset_is_not_loaded_is_refused_loudly(
        site: DemoSite, host: HostSupervisor, operator: User) -> None:
    """Without its preset a batch's workers would have no allow-list and no egress proxy:
    the host pauses the plan naming the preset, and no PO runs."""
    batch = _batch(site, 2)
    Batch.objects.filter(pk=batch.pk).update(site_preset="retired-preset")
    request_control(operator, "start", batch=batch)
    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.PAUSED, 30, "the plan paused")
    reason = PoolPlan.current().reason
    assert "'retired-preset'" in reason and "not loaded" in reason, reason
    assert set(batch.pos.values_list("status", flat=True)) == {Status.QUEUED}
    assert host.pool is None
