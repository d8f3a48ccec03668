"""The dashboard's WebSocket: a snapshot on connect, then the pool's deltas.

    supervisor ─Broadcaster─▶ group "pool" ─"pool.update"──▶ PoolConsumer ─▶ {"kind": "update"}
    page ─{"action": …}─▶ PoolConsumer ─▶ request_control ─▶ {"kind": "control_result"}
                                       └─▶ group "pool" ─"pool.snapshot"─▶ every dashboard

Authentication and Origin checks happen in routing (AuthMiddlewareStack,
AllowedHostsOriginValidator); here we refuse anonymous users and users without a
role, and authorise every control message again: CSRF does not cover WebSockets.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from poolsite.batches.roles import can_operate, can_view
from poolsite.dashboard.control_messages import (
    BadControl,
    parse_control,
    perform_control,
    record_rate_limited,
)
from poolsite.dashboard.snapshot import build_snapshot
from poolsite.supervisor.broadcast import GROUP

log = logging.getLogger(__name__)
REFRESH_EVERY = 1.0  # seconds; a page may ask for a snapshot at most this often
# Control messages from someone who may not control the pool are refused and audited;
# a script sending them in a loop would fill the audit trail (and cost a snapshot
# each). Per connection, the first few in a window are audited one by one, then the
# burst gets one audit row and a log line, and the rest only a "rate-limited" reply.
REFUSED_BURST = 3
REFUSED_WINDOW = 10.0  # seconds


@database_sync_to_async
def roles_of(user: Any) -> tuple[bool, bool]:
    return can_view(user), can_operate(user)


@database_sync_to_async
def snapshot_now() -> dict[str, Any]:
    return build_snapshot()


class PoolConsumer(AsyncJsonWebsocketConsumer):
    """One dashboard tab."""

    joined = False
    can_control = False
    last_refresh = 0.0
    refused_since = 0.0  # start of the current window of refused control messages
    refused_count = 0

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close()
            return
        allowed, self.can_control = await roles_of(user)
        if not allowed:
            await self.close()
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True
        await self.accept()
        await self.send_snapshot(await snapshot_now())

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("kind") == "refresh":
            await self.refresh()
            return
        await self.control(content)

    async def refresh(self) -> None:
        if time.monotonic() - self.last_refresh >= REFRESH_EVERY:
            self.last_refresh = time.monotonic()
            await self.send_snapshot(await snapshot_now())

    async def control(self, content: Any) -> None:
        user = self.scope["user"]
        try:
            request = parse_control(content)
        except BadControl as exc:
            await self.send_json({"kind": "control_result", "ok": False, "message": str(exc)})
            return
        if not self.can_control:
            if self.refusals_exhausted():
                if self.refused_count == REFUSED_BURST + 1:  # once per burst
                    log.warning("control messages from %s, who is not an operator, "
                                "rate-limited for %.0f s", user.username, REFUSED_WINDOW)
                    await database_sync_to_async(record_rate_limited)(
                        user.pk, request.action, REFUSED_WINDOW)
                left = REFUSED_WINDOW - (time.monotonic() - self.refused_since)
                await self.send_json({
                    "kind": "control_result", "ok": False, "rate_limited": True,
                    "action": request.action,
                    "message": f"rate-limited: you may not control the pool, and sent too "
                               f"many control messages; wait {max(left, 0):.0f} s"})
                return
            log.warning("control message from %s, who is not an operator: %.200r",
                        user.username, content)
        ok, message = await database_sync_to_async(perform_control)(user.pk, request)
        await self.send_json({"kind": "control_result", "ok": ok, "message": message,
                              "action": request.action})
        snapshot = await snapshot_now()
        if ok:  # every open dashboard follows the new plan at once
            await self.channel_layer.group_send(GROUP, {"type": "pool.snapshot",
                                                        "snapshot": snapshot})
        else:
            await self.send_snapshot(snapshot)

    def refusals_exhausted(self) -> bool:
        """Count a refused control message; True once past the burst of this window."""
        now = time.monotonic()
        if now - self.refused_since >= REFUSED_WINDOW:
            self.refused_since, self.refused_count = now, 0
        self.refused_count += 1
        return self.refused_count > REFUSED_BURST

    async def send_snapshot(self, snapshot: dict[str, Any]) -> None:
        await self.send_json({"kind": "snapshot", **snapshot, "can_control": self.can_control})

    # -- group messages ---------------------------------------------------------------
    async def pool_update(self, event: dict[str, Any]) -> None:
        update = {"kind": "update", "workers": event.get("workers") or {},
                  "pool": event.get("pool") or {}, "events": event.get("events") or []}
        if "sent_at" in event:  # when the oldest change in this update happened (epoch ms)
            update["sent_at"] = event["sent_at"]
        await self.send_json(update)

    async def pool_snapshot(self, event: dict[str, Any]) -> None:
        await self.send_snapshot(event["snapshot"])
