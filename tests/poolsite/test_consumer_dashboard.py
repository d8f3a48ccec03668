"""The dashboard's WebSocket, through the real ASGI stack (origin check, session auth)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone

from poolsite.batches.models import Batch, ControlAction
from poolsite.dashboard.routing import websocket_application
from poolsite.supervisor.broadcast import GROUP
from poolsite.supervisor.models import PoolHost, PoolPlan
from tests.poolsite.dashboard_personas import make_batch, operator, session_cookie, user_in, viewer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]
ORIGIN = "http://127.0.0.1:8000"
WAIT = 5  # seconds for any one message


def headers(cookie: str | None, origin: str | None = ORIGIN) -> list[tuple[bytes, bytes]]:
    result = [(b"host", b"127.0.0.1:8000")]
    if origin is not None:
        result.append((b"origin", origin.encode()))
    if cookie is not None:
        result.append((b"cookie", f"sessionid={cookie}".encode()))
    return result


@asynccontextmanager
async def dashboard(cookie: str | None, origin: str | None = ORIGIN,
                    application: Any = None) -> AsyncIterator[WebsocketCommunicator]:
    """A connected dashboard that has read its first snapshot; always disconnected."""
    communicator = WebsocketCommunicator(application or websocket_application(), "/ws/pool/",
                                         headers=headers(cookie, origin))
    try:
        connected, _ = await communicator.connect(timeout=WAIT)
        assert connected, "the dashboard was refused"
        first = await communicator.receive_json_from(timeout=WAIT)
        assert first["kind"] == "snapshot"
        communicator.first = first
        yield communicator
    finally:
        await communicator.disconnect()


async def refused(cookie: str | None, origin: str | None = ORIGIN,
                  application: Any = None) -> bool:
    communicator = WebsocketCommunicator(application or websocket_application(), "/ws/pool/",
                                         headers=headers(cookie, origin))
    try:
        connected, _ = await communicator.connect(timeout=WAIT)
        return not connected
    finally:
        await communicator.disconnect()


async def next_of_kind(communicator: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    while True:
        message = await communicator.receive_json_from(timeout=WAIT)
        if message["kind"] == kind:
            return message


@pytest.fixture
def viewer_cookie() -> str:
    return session_cookie(viewer())


@pytest.fixture
def operator_cookie() -> str:
    return session_cookie(operator())


@pytest.fixture
def live_host() -> PoolHost:
    return PoolHost.objects.create(
        name="h1:10", hostname="h1", pid=10, state="PAUSED", reason="login required on coupa",
        pool_size=2, heartbeat_at=timezone.now(),
        workers=[{"worker_id": "w1", "state": "busy", "po_number": "PO1", "phase": "download"},
                 {"worker_id": "w2", "state": "idle"}])


async def test_it_refuses_anonymous_connections() -> None:
    assert await refused(None)


async def test_it_refuses_users_without_a_role() -> None:
    nobody = await database_sync_to_async(user_in)(None, "nobody")
    assert await refused(await database_sync_to_async(session_cookie)(nobody))


async def test_it_refuses_a_foreign_origin_with_production_hosts(operator_cookie: str) -> None:
    # The origin check reads its settings when built, so build it under production
    # settings: the site is https://pool.example.com, reached through a proxy that
    # forwards to 127.0.0.1:8000, so its origin is a trusted one.
    with override_settings(DEBUG=False, ALLOWED_HOSTS=["pool.example.com"],
                           CSRF_TRUSTED_ORIGINS=["https://pool.example.com"]):
        application = websocket_application()
    assert await refused(operator_cookie, "https://evil.example.com", application)
    assert await refused(operator_cookie, "http://127.0.0.1:8000", application)
    assert await refused(operator_cookie, None, application)
    async with dashboard(operator_cookie, "https://pool.example.com", application) as ws:
        assert ws.first["can_control"] is True


async def test_it_refuses_a_foreign_origin_in_the_deployed_application(
        operator_cookie: str) -> None:
    from poolsite.asgi import application

    assert await refused(operator_cookie, "http://evil.example.com", application)


async def test_it_sends_a_snapshot_on_connect(viewer_cookie: str, live_host: PoolHost) -> None:
    async with dashboard(viewer_cookie) as ws:
        snapshot = ws.first
    assert snapshot["can_control"] is False
    assert snapshot["headline"] == {"state": "paused", "reason": "login required on coupa"}
    assert set(snapshot["workers"]) == {"h1:10/w1", "h1:10/w2"}
    assert snapshot["workers"]["h1:10/w1"]["po_number"] == "PO1"
    assert snapshot["allowed"] == ["start", "scale"]  # the plan is idle


async def test_it_relays_pool_updates_to_every_dashboard(viewer_cookie: str,
                                                         operator_cookie: str) -> None:
    update = {"type": "pool.update", "sent_at": 1234,
              "workers": {"h1:10/w1": {"phase": "verify files"}},
              "pool": {"host": "h1:10", "state": "RUNNING", "sent_at": 1},
              "events": [{"at": 1.0, "host": "h1:10", "level": "warning",
                          "kind": "worker_replaced", "message": "w2 crashed; replaced"}]}
    async with dashboard(viewer_cookie) as first, dashboard(operator_cookie) as second:
        await get_channel_layer().group_send(GROUP, update)
        for ws in (first, second):
            relayed = await next_of_kind(ws, "update")
            assert relayed["workers"] == update["workers"]
            assert relayed["pool"]["state"] == "RUNNING"
            assert relayed["events"][0]["kind"] == "worker_replaced"
            assert relayed["sent_at"] == 1234


async def test_it_refuses_control_from_a_viewer_and_records_the_refusal(
        viewer_cookie: str, caplog: pytest.LogCaptureFixture) -> None:
    batch = await database_sync_to_async(make_batch)(3)
    async with dashboard(viewer_cookie) as ws:
        await ws.send_json_to({"action": "start", "batch": batch.pk})
        result = await next_of_kind(ws, "control_result")
        assert result["ok"] is False and "permission" in result["message"]
        assert (await next_of_kind(ws, "snapshot"))["plan"]["state"] == "idle"
    assert "not an operator" in caplog.text
    plan = await database_sync_to_async(PoolPlan.current)()
    assert plan.state == PoolPlan.State.IDLE
    outcomes = await database_sync_to_async(
        lambda: list(ControlAction.objects.values_list("username", "outcome")))()
    assert outcomes == [("vera", "refused")]


async def test_it_lets_an_operator_start_and_every_dashboard_follows(
        operator_cookie: str, viewer_cookie: str) -> None:
    batch = await database_sync_to_async(make_batch)(3)
    async with dashboard(operator_cookie) as ws, dashboard(viewer_cookie) as other:
        await ws.send_json_to({"action": "start", "batch": batch.pk, "size": 2})
        result = await next_of_kind(ws, "control_result")
        assert result["ok"] is True, result
        for each, can_control in ((ws, True), (other, False)):
            snapshot = await next_of_kind(each, "snapshot")
            assert snapshot["can_control"] is can_control
            assert snapshot["plan"]["state"] == "running"
            assert snapshot["plan"]["pool_size"] == 2
            assert snapshot["batch"]["id"] == batch.pk
            assert "pause" in snapshot["allowed"] and "start" not in snapshot["allowed"]
    actions = await database_sync_to_async(
        lambda: list(ControlAction.objects.values_list("username", "action")))()
    assert actions == [("otto", "start")]


async def test_it_says_why_an_operator_is_refused(operator_cookie: str) -> None:
    async with dashboard(operator_cookie) as ws:
        await ws.send_json_to({"action": "pause"})
        result = await next_of_kind(ws, "control_result")
        assert result == {"kind": "control_result", "ok": False, "action": "pause",
                          "message": "cannot pause while the pool is idle"}
        await ws.send_json_to({"action": "scale", "size": 9})
        assert "1-8" in (await next_of_kind(ws, "control_result"))["message"]


@pytest.mark.parametrize("message", [
    {"action": 5}, {"size": 2}, {"action": "scale", "size": "two"},
    {"action": "start", "batch": True}, ["pause"],
])
async def test_it_answers_malformed_control_messages_without_recording(
        operator_cookie: str, message: Any) -> None:
    async with dashboard(operator_cookie) as ws:
        await ws.send_json_to(message)
        assert (await next_of_kind(ws, "control_result"))["ok"] is False
    count: Callable[[], int] = ControlAction.objects.count
    assert await database_sync_to_async(count)() == 0


async def test_it_rechecks_the_role_on_every_control_message(operator_cookie: str) -> None:
    batch = await database_sync_to_async(make_batch)(2)
    async with dashboard(operator_cookie) as ws:
        await database_sync_to_async(
            lambda: User.objects.get(username="otto").groups.clear())()
        await ws.send_json_to({"action": "start", "batch": batch.pk})
        assert (await next_of_kind(ws, "control_result"))["ok"] is False
    assert (await database_sync_to_async(PoolPlan.current)()).state == PoolPlan.State.IDLE


async def test_it_sends_a_fresh_snapshot_when_asked(viewer_cookie: str) -> None:
    async with dashboard(viewer_cookie) as ws:
        await database_sync_to_async(Batch.objects.create)(
            name="late", source_name="late.csv", source_sha256="0" * 64, site_preset="demo")
        await ws.send_json_to({"kind": "refresh"})
        snapshot = await next_of_kind(ws, "snapshot")
        assert [b["name"] for b in snapshot["batches"]] == ["late"]
