"""Coalesced live updates from the supervisor thread to the dashboards' group.

The supervisor is a plain thread; the channel layer is asyncio. Calling
`async_to_sync(layer.group_send)` from that thread would run the send on a fresh
event loop, and the in-memory layer then wakes consumers waiting on another loop
(channels#891-style "attached to a different loop" failures, or silently late
delivery). So every send runs on one loop: daphne's own loop in the embedded
topology (the consumers live there), or a private loop thread with --no-web.

Updates are merged per key and flushed at most every `interval` seconds, so a
dashboard receives at most ~10 messages per second however busy the pool is, and
the in-memory layer's per-channel capacity (100) is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
GROUP = "pool"


class Broadcaster:
    """Merge updates from any thread; send them to GROUP from one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None,
                 interval: float = 0.1) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._workers: dict[str, dict[str, Any]] = {}
        self._pool: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []
        self._oldest: float | None = None  # time.time() of the oldest change not yet sent
        self._wake = threading.Event()
        self._stopped = False
        self._own_thread: threading.Thread | None = None
        if loop is None:
            loop = asyncio.new_event_loop()
            self._own_thread = threading.Thread(target=loop.run_forever, name="broadcast",
                                                daemon=True)
            self._own_thread.start()
        self.loop = loop
        self._pump_future = asyncio.run_coroutine_threadsafe(self._pump(), loop)

    # -- producers (any thread) --------------------------------------------------------
    def worker(self, key: str, fields: dict[str, Any]) -> None:
        """Merge new fields of one worker card (key: "host/worker-id")."""
        with self._lock:
            self._workers.setdefault(key, {}).update(fields)
            self._stamp()

    def pool(self, fields: dict[str, Any]) -> None:
        """Merge new pool-level fields (state, reason, counters, progress)."""
        with self._lock:
            self._pool.update(fields)
            self._stamp()

    def event(self, item: dict[str, Any]) -> None:
        """Queue one entry for the recent-events list (kept in order, capped)."""
        with self._lock:
            self._events.append(item)
            del self._events[:-50]
            self._stamp()

    def _stamp(self) -> None:
        if self._oldest is None:
            self._oldest = time.time()

    def listen(self, group: str, callback: Callable[[], None]) -> None:
        """Call `callback` (on the loop's thread) for every message sent to `group`."""
        asyncio.run_coroutine_threadsafe(self._listen(group, callback), self.loop)

    async def _listen(self, group: str, callback: Callable[[], None]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        while not self._stopped:
            try:
                await layer.receive(channel)
                callback()
            except Exception:
                log.warning("wake-up listener failed; the poll interval still applies",
                            exc_info=True)
                await asyncio.sleep(1.0)

    def close(self, timeout: float = 2.0) -> None:
        """Flush what is pending and stop the pump (and the private loop, if any)."""
        self._stopped = True
        try:
            self._pump_future.result(timeout=timeout)
        except Exception:  # closing must not raise on a dead loop
            log.debug("broadcast pump did not finish cleanly", exc_info=True)
        if self._own_thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._own_thread.join(timeout=timeout)

    # -- the pump (on self.loop) -------------------------------------------------------
    def _take(self) -> dict[str, Any] | None:
        with self._lock:
            if not (self._workers or self._pool or self._events):
                return None
            # sent_at: when the oldest change in it happened (epoch ms), so dashboards can
            # measure engine event -> DOM latency including the coalescing wait.
            message = {"type": "pool.update", "workers": self._workers, "pool": self._pool,
                       "events": self._events, "sent_at": (self._oldest or time.time()) * 1000}
            self._workers, self._pool, self._events = {}, {}, []
            self._oldest = None
            return message

    async def _pump(self) -> None:
        layer = get_channel_layer()
        while True:
            message = self._take()
            if message is not None and layer is not None:
                try:
                    await layer.group_send(GROUP, message)
                except Exception:  # live updates are best effort
                    log.warning("could not broadcast a pool update", exc_info=True)
            if self._stopped:
                return
            await asyncio.sleep(self.interval)
