"""The procurement site goes down mid-batch: the pool pauses, then resumes by itself."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from poolsite.batches.batch_import import batch_import_rows
from poolsite.batches.models import Status
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from poolsite.supervisor.controls import request_control
from poolsite.supervisor.host import HostSupervisor
from poolsite.supervisor.models import PoolEvent, PoolPlan
from tests.conftest import user_in_role
from tests.runpool_harness import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def host(start_host: Callable[..., HostSupervisor]) -> HostSupervisor:
    return start_host(site_probe_seconds=1.0)


def test_it_pauses_during_an_outage_and_finishes_the_batch_after_it(
        site: DemoSite, host: HostSupervisor) -> None:
    operator = user_in_role("olga", "operators")
    site.latency = 0.2
    pos = catalog.demo_batch(site.base_url, 30)
    batch = batch_import_rows(pos, name="outage")
    request_control(operator, "start", batch=batch, size=2)
    wait_for(lambda: batch.pos.filter(status=Status.COMPLETED).count() >= 3, 90, "progress")

    site.down = True
    outage_started = time.monotonic()
    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.PAUSED, 60, "auto-pause")
    assert PoolPlan.current().reason.startswith("SITE_FAILING")
    wait_for(lambda: time.monotonic() - outage_started >= 10, 15, "ten seconds of outage")
    assert PoolPlan.current().state == PoolPlan.State.PAUSED  # no resume while down
    site.down = False

    wait_for(lambda: PoolPlan.current().state == PoolPlan.State.IDLE, 180, "batch finished")
    statuses = dict(batch.pos.values_list("po_number", "status"))
    assert statuses == {po["po_number"]: Status.COMPLETED for po in pos}
    kinds = set(PoolEvent.objects.values_list("kind", flat=True))
    assert {"auto_paused", "auto_resumed"} <= kinds
