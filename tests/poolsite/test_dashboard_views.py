"""The server-rendered dashboard, its no-JS controls and the snapshot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from poolsite.batches.models import ControlAction, PurchaseOrder, Status
from poolsite.dashboard.preview import seed_preview
from poolsite.dashboard.snapshot import build_snapshot, headline, shown_counts
from poolsite.supervisor.models import PoolHost, PoolPlan
from tests.poolsite.dashboard_personas import make_batch, operator, user_in, viewer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def output_dir(settings: Any, tmp_path: Path) -> Path:
    settings.OUTPUT_DIR = tmp_path / "output"
    return Path(settings.OUTPUT_DIR)


def client_for(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_it_sends_anonymous_users_to_sign_in() -> None:
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_forbids_users_without_a_role() -> None:
    assert client_for(user_in(None, "nobody")).get("/").status_code == 403


def test_it_renders_the_whole_snapshot_without_javascript() -> None:
    seed_preview(pos=40, workers=3)
    PoolHost.objects.update(state="PAUSED", reason="login required on coupa")
    page = client_for(viewer()).get("/").content.decode()
    assert "login required on coupa" in page
    assert page.count('class="card state-') == 3
    assert "Q3 supplier invoices" in page and "Latest failures" in page
    assert "worker_replaced" in page
    assert "/screenshot.png" in page
    assert 'id="dashboard-snapshot"' in page  # the seed for dashboard.js


def test_it_shows_no_controls_to_viewers() -> None:
    make_batch(2)
    page = client_for(viewer()).get("/").content.decode()
    assert 'id="controls"' not in page and "/dashboard/control/" not in page
    assert 'data-can-control="0"' in page


def test_it_enables_only_the_buttons_the_plan_allows() -> None:
    make_batch(2)
    page = client_for(operator()).get("/").content.decode()
    assert 'value="start" data-action="start" class="primary">' in page
    assert 'value="pause" data-action="pause" disabled>' in page


def test_it_requires_csrf_for_controls() -> None:
    batch = make_batch(2)
    client = client_for(operator(), enforce_csrf_checks=True)
    response = client.post("/dashboard/control/", {"action": "start", "batch": batch.pk})
    assert response.status_code == 403
    assert PoolPlan.current().state == PoolPlan.State.IDLE


def test_it_refuses_controls_to_viewers_and_gets() -> None:
    batch = make_batch(2)
    client = client_for(viewer())
    assert client.post("/dashboard/control/", {"action": "start",
                                               "batch": batch.pk}).status_code == 403
    assert client_for(operator()).get("/dashboard/control/").status_code == 405
    assert PoolPlan.current().state == PoolPlan.State.IDLE


def test_it_lets_an_operator_start_pause_and_scale_without_javascript() -> None:
    batch = make_batch(2)
    client = client_for(operator())
    response = client.post("/dashboard/control/", {"action": "start", "batch": batch.pk},
                           follow=True)
    assert f"Started {batch}" in response.content.decode()
    client.post("/dashboard/control/", {"action": "pause"})
    client.post("/dashboard/control/", {"action": "scale", "size": "6"})
    plan = PoolPlan.current()
    assert (plan.state, plan.pool_size) == (PoolPlan.State.PAUSED, 6)
    refused = client.post("/dashboard/control/", {"action": "pause"}, follow=True)
    assert "cannot pause while the pool is paused" in refused.content.decode()


def test_it_asks_before_stopping_without_javascript() -> None:
    batch = make_batch(2)
    client = client_for(operator())
    client.post("/dashboard/control/", {"action": "start", "batch": batch.pk})
    ask = client.post("/dashboard/control/", {"action": "stop", "immediate": "1"})
    assert ask.status_code == 200 and "Stop the pool now?" in ask.content.decode()
    assert PoolPlan.current().state == PoolPlan.State.RUNNING
    client.post("/dashboard/control/", {"action": "stop", "immediate": "1",
                                        "confirmed": "yes"})
    plan = PoolPlan.current()
    assert (plan.state, plan.immediate_stop) == (PoolPlan.State.STOPPING, True)
    assert ControlAction.objects.filter(action="stop").count() == 1


def test_it_counts_progress_and_failures_of_the_running_batch() -> None:
    batch = make_batch(10)
    ids = list(batch.pos.values_list("id", flat=True))
    now = timezone.now()
    PurchaseOrder.objects.filter(pk__in=ids[:4]).update(status=Status.COMPLETED,
                                                        last_attempt_at=now)
    PurchaseOrder.objects.filter(pk__in=ids[4:5]).update(status=Status.TIMEOUT,
                                                         last_attempt_at=now)
    PurchaseOrder.objects.filter(pk__in=ids[5:6]).update(status=Status.RUNNING)
    PoolPlan.objects.update_or_create(pk=1, defaults={"batch": batch, "state": "running"})
    progress = build_snapshot()["batch"]
    assert (progress["total"], progress["done"], progress["pending"]) == (10, 5, 5)
    assert (progress["completed"], progress["failed"], progress["counts"]["RUNNING"]) == (4, 1, 1)
    assert progress["active"] == 0  # claimed, but no worker is on it
    assert progress["percent"] == 50.0
    assert progress["throughput_per_min"] == 1.0  # 5 finished in the last 5 minutes
    assert progress["eta_seconds"] == 300
    assert [f["po_number"] for f in build_snapshot()["failures"]] == ["PO500004"]


def test_a_worker_cards_po_link_goes_to_the_po_page() -> None:
    batch = make_batch(3)
    po = batch.pos.order_by("id")[1]
    client = client_for(viewer())
    url = reverse("dashboard_worker_po", args=[batch.pk, po.po_number])
    assert client.get(url)["Location"] == reverse("po_detail", args=[po.pk])
    assert client.get(reverse("dashboard_worker_po", args=[batch.pk, "PO-nope"])
                      ).status_code == 404


def test_running_shows_the_pos_on_workers_and_the_claimed_ahead_apart() -> None:
    counts = {"QUEUED": 44, "RUNNING": 8, "COMPLETED": 8}
    shown = {c["status"]: c["n"] for c in shown_counts(counts, active=4)}
    assert shown == {"QUEUED": 44, "RUNNING": 4, "CLAIMED": 4, "COMPLETED": 8}
    # A busy card the counts have not caught up with yet: never more RUNNING than leased.
    shown = {c["status"]: c["n"] for c in shown_counts(counts, active=9)}
    assert (shown["RUNNING"], shown["CLAIMED"], sum(shown.values())) == (8, 0, 60)


def test_the_chart_spans_a_finished_run_not_the_last_thirty_minutes() -> None:
    batch = make_batch(6)
    ids = list(batch.pos.order_by("id").values_list("id", flat=True))
    ended = timezone.now().replace(second=30, microsecond=0) - timedelta(hours=2)
    for n, po_id in enumerate(ids):  # 2 a minute over 3 minutes, two hours ago
        PurchaseOrder.objects.filter(pk=po_id).update(
            status=Status.COMPLETED, last_attempt_at=ended - timedelta(minutes=2 - n // 2))
    PoolPlan.objects.update_or_create(pk=1, defaults={"batch": batch, "state": "idle"})
    snapshot = build_snapshot()
    assert [p["ok"] for p in snapshot["chart"]] == [2, 2, 2]
    assert snapshot["chart"][-1]["t"] == int(ended.replace(second=0).timestamp())
    assert snapshot["chart_live"] is False


def test_it_builds_the_snapshot_of_a_big_batch_in_a_few_queries(
        django_assert_max_num_queries: Any) -> None:
    batch = seed_preview(pos=2000, workers=8)
    with django_assert_max_num_queries(12):
        snapshot = build_snapshot()
    assert snapshot["batch"]["total"] == 2000 and len(snapshot["workers"]) == 8
    assert batch.pk == snapshot["plan"]["batch_id"]


def test_it_ignores_stale_hosts() -> None:
    PoolHost.objects.create(name="old:1", hostname="old", pid=1, state="RUNNING",
                            heartbeat_at=timezone.now() - timedelta(minutes=5),
                            workers=[{"worker_id": "w1", "state": "busy"}])
    snapshot = build_snapshot()
    assert snapshot["hosts"] == [] and snapshot["workers"] == {}


@pytest.mark.parametrize(("plan", "hosts", "expected"), [
    ("running", [("RUNNING", ""), ("ERROR", "browser missing")], ("error", "browser missing")),
    ("running", [("PAUSED", "login required on coupa")], ("paused", "login required on coupa")),
    ("paused", [], ("paused", "paused by otto")),
    ("running", [], ("running", "waiting for a pool host (manage.py runpool)")),
    ("idle", [("IDLE", "")], ("idle", "paused by otto")),
])
def test_it_puts_the_reason_in_the_headline(plan: str, hosts: list[tuple[str, str]],
                                            expected: tuple[str, str]) -> None:
    line = headline(plan, "paused by otto", hosts)
    assert (line["state"], line["reason"]) == expected


def test_it_renders_worker_cards_with_fields_missing() -> None:
    PoolHost.objects.create(name="h:1", hostname="h", pid=1, state="STARTING",
                            heartbeat_at=timezone.now(), workers=[{"worker_id": "w1"}])
    page = client_for(viewer()).get("/").content.decode()
    assert 'data-key="h:1/w1"' in page
