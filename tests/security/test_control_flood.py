"""A viewer's control messages in a loop do not flood the audit trail.

The attack: a viewer's socket sending refused control messages in a loop wrote one
audit row (and one log line, and one snapshot) per message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from poolsite.batches.models import ControlAction
from poolsite.dashboard import consumers
from poolsite.dashboard.routing import websocket_application
from tests.poolsite.dashboard_personas import session_cookie, viewer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]


async def connected(cookie: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        websocket_application(), "/ws/pool/",
        headers=[*HEADERS, (b"cookie", f"sessionid={cookie}".encode())])
    ok, _ = await communicator.connect(timeout=10)
    assert ok
    assert (await communicator.receive_json_from(timeout=10))["kind"] == "snapshot"
    return communicator


async def results(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = await communicator.receive_json_from(timeout=10)
        if message["kind"] == "control_result":
            found.append(message)
    return found


async def test_200_refused_messages_leave_a_handful_of_audit_rows(
        caplog: pytest.LogCaptureFixture) -> None:
    cookie = await database_sync_to_async(session_cookie)(
        await database_sync_to_async(viewer)())
    ws = await connected(cookie)
    try:
        with caplog.at_level(logging.WARNING, logger="poolsite"):
            for _ in range(200):
                await ws.send_json_to({"action": "pause"})
            answers = await results(ws, 200)
    finally:
        await ws.disconnect()
    assert all(a["ok"] is False for a in answers)
    limited = [a for a in answers if a.get("rate_limited")]
    assert len(limited) >= 190
    assert "rate-limited" in limited[-1]["message"]
    rows = await database_sync_to_async(
        lambda: list(ControlAction.objects.values_list("outcome", "outcome_message")))()
    assert 1 <= len(rows) <= 5, rows
    assert all(outcome == "refused" for outcome, _ in rows)
    assert any(message.startswith("rate-limited") for _, message in rows)
    warnings = [r for r in caplog.records if r.name.startswith("poolsite")]
    assert len(warnings) <= 10, [r.getMessage() for r in warnings]


async def test_the_limit_lifts_after_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "REFUSED_WINDOW", 0.5)
    cookie = await database_sync_to_async(session_cookie)(
        await database_sync_to_async(viewer)())
    ws = await connected(cookie)
    try:
        for _ in range(consumers.REFUSED_BURST + 1):
            await ws.send_json_to({"action": "pause"})
        answers = await results(ws, consumers.REFUSED_BURST + 1)
        assert answers[-1].get("rate_limited") is True
        time.sleep(0.6)
        await ws.send_json_to({"action": "pause"})
        (again,) = await results(ws, 1)
        assert not again.get("rate_limited") and "rate-limited" not in again["message"]
    finally:
        await ws.disconnect()
