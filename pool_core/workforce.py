"""The worker processes of one run: started, stopped, retired, killed, cleaned up, weighed.

The Dispatcher decides when (a deadline, a stop, a scale change, a death); the
Workforce knows how. It owns the handles of the live workers (`workers`, by slot), the
slots waiting for a replacement and the back-off after failed starts. Killing a tree
and deleting a temp root are slow: they run on the janitor threads, never under the
pool's lock. The memory monitor thread ("pool-memory") samples the PSS of every
worker's tree, kills a worker over the hard limit (its PO is retried as MEMORY_LIMIT),
recycles one over the soft limit after its PO, and emits a Heartbeat per worker.

Not thread-safe on its own: every method but spawn(), sample_memory() and
join_cleanups() runs under the pool's lock (the Dispatcher's `cond`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pool_core.config import PoolOptions, WorkerSpec
from pool_core.events import EventBus, Heartbeat
from pool_core.handles import WorkerHandle
from pool_core.process_tree import kill_tree, trees_pss_mb
from pool_core.profiles import ProfileManager, WorkerRoot
from pool_core.reasons import Reason
from pool_core.worker import process_context, worker_main

log = logging.getLogger(__name__)
SPAWN_BACKOFF_MAX_S = 10.0  # a failed start delays the next by 1 s more, up to this
STATE_ORDER = {"idle": 0, "starting": 1, "busy": 2}  # who retires first on scale-down


class Workforce:
    """The live worker processes of one run, by slot."""

    def __init__(self, *, spec: WorkerSpec, profiles: ProfileManager, options: PoolOptions,
                 bus: EventBus) -> None:
        self.spec = spec
        self.profiles = profiles
        self.options = options
        self.bus = bus
        self.workers: dict[int, WorkerHandle] = {}
        self.slot_restarts: dict[int, int] = {}
        self.replace_slots: list[int] = []  # slots whose worker ended and wants a successor
        self.start_failures = 0  # failed starts in a row (reset by a worker's Ready)
        self.next_spawn_at = 0.0  # time.monotonic() before which nothing is spawned
        self._cleanups: list[Future[Any]] = []
        self._janitor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool-janitor")
        self._mp = process_context()

    # -- counting ------------------------------------------------------------------------
    def ready(self) -> int:
        """Workers past their start-up."""
        return sum(1 for w in self.workers.values() if w.state != "starting")

    def at_size(self, size: int) -> bool:
        """Exactly `size` workers, all ready, none on its way out."""
        return (len(self.workers) == size and self.ready() == size
                and not any(w.leaving for w in self.workers.values()))

    def details(self) -> list[dict[str, Any]]:
        return [{
            "id": w.slot, "pid": w.pid, "state": w.state if not w.leaving else "stopping",
            "current_po": w.task.po_number if w.task else None, "phase": w.phase,
            "started_at": w.started_wall, "tasks_done": w.tasks_done, "restarts": w.restarts,
            "memory_mb": round(w.memory_mb, 1),
        } for w in sorted(self.workers.values(), key=lambda w: w.slot)]

    # -- starting ------------------------------------------------------------------------
    def spawn(self, slot: int, root: WorkerRoot | None) -> WorkerHandle:
        """Start a worker process on `root` (a new temp root when None); no lock needed.

        On failure the root is removed and the exception raised: the caller decides.
        """
        try:
            root = root or self.profiles.create_root(slot)
            parent_conn, child_conn = self._mp.Pipe()
            process = self._mp.Process(target=worker_main, name=f"pool-worker-{slot}",
                                       args=(slot, self.spec, root, child_conn), daemon=True)
            spawned = time.monotonic()
            process.start()
            child_conn.close()
        except Exception:
            if root is not None:
                self.profiles.remove_root(root.path)
            raise
        return WorkerHandle(slot=slot, process=process, conn=parent_conn, root=root,
                            spawned_at=spawned, restarts=self.slot_restarts.get(slot, 0))

    def start_failed(self, slot: int | None = None) -> int:
        """Count a failed start (and queue `slot` again); return failures in a row."""
        self.start_failures += 1
        if slot is not None:
            self.replace_slots.append(slot)
        self.next_spawn_at = time.monotonic() + min(SPAWN_BACKOFF_MAX_S,
                                                    float(self.start_failures))
        return self.start_failures

    def plan_spawns(self, target: int) -> list[int]:
        """The slots to start now to reach `target` live workers."""
        live = [w for w in self.workers.values() if w.leaving in ("", "recycle")]
        missing = target - len(live)
        if missing <= 0:
            self.replace_slots.clear()
            return []
        if time.monotonic() < self.next_spawn_at:
            return []
        slots = [s for s in self.replace_slots if s not in self.workers][:missing]
        self.replace_slots = [s for s in self.replace_slots if s not in slots]
        slot = 0
        while len(slots) < missing:
            if slot not in self.workers and slot not in slots:
                slots.append(slot)
            slot += 1
        return slots

    # -- ending --------------------------------------------------------------------------
    def ended(self, handle: WorkerHandle, *, replace: bool) -> None:
        """A worker's process is gone: forget it, and queue its slot when `replace`."""
        del self.workers[handle.slot]
        if replace:
            self.replace_slots.append(handle.slot)
            self.slot_restarts[handle.slot] = self.slot_restarts.get(handle.slot, 0) + 1

    def send_stop(self, handle: WorkerHandle) -> None:
        """Ask a worker to exit after its current task (once)."""
        if not handle.stop_sent:
            handle.stop_sent = True
            handle.leaving = handle.leaving or "stop"
            handle.send(None)

    def retire_surplus(self, target: int) -> None:
        """Mark workers beyond `target` to leave: idle ones first, then starting, then
        busy ones; the highest slot first among equals."""
        live = [w for w in self.workers.values() if not w.leaving]
        excess = len(live) - target
        for w in sorted(live, key=lambda w: (STATE_ORDER[w.state], -w.slot))[:max(0, excess)]:
            w.leaving = "scale_down"
            if w.state == "idle":
                self.send_stop(w)

    def kill(self, handle: WorkerHandle, reason: str) -> None:
        """Kill a worker's whole tree (on a janitor thread); `reason` explains its end."""
        handle.kill_reason = reason
        self._cleanups.append(self._janitor.submit(kill_tree, handle.pid, handle.root.path))

    def kill_all(self, reason: str) -> None:
        for w in self.workers.values():
            if not w.kill_reason:
                self.kill(w, reason)

    def cleanup_later(self, handle: WorkerHandle) -> None:
        """Kill what is left of an ended worker's tree and remove its temp root."""
        def cleanup() -> None:
            kill_tree(handle.pid, handle.root.path)
            self.profiles.remove_root(handle.root.path)
            handle.conn.close()

        self._cleanups.append(self._janitor.submit(cleanup))

    def join_cleanups(self) -> None:
        """Wait for every kill and clean-up submitted so far, then stop the janitor."""
        for future in list(self._cleanups):
            future.result()
        self._janitor.shutdown(wait=True)

    # -- memory --------------------------------------------------------------------------
    def monitor_memory(self, cond: threading.Condition, finished: threading.Event,
                       wake: Callable[[], None]) -> threading.Thread:
        """Start the memory monitor thread; it ends when `finished` is set."""
        def monitor() -> None:
            while not finished.wait(self.options.memory_check_interval_s):
                with cond:
                    handles = [w for w in self.workers.values() if w.state != "starting"]
                pss = trees_pss_mb([w.pid for w in handles if w.pid])
                readings = [(w, pss[w.pid]) for w in handles if w.pid]
                with cond:
                    for handle, mb in readings:
                        self._apply_memory(handle, mb)
                wake()

        thread = threading.Thread(target=monitor, name="pool-memory", daemon=True)
        thread.start()
        return thread

    def _apply_memory(self, handle: WorkerHandle, mb: float) -> None:
        if self.workers.get(handle.slot) is not handle or handle.kill_reason:
            return
        handle.memory_mb = mb
        hard, soft = self.options.memory_hard_limit_mb, self.options.memory_soft_limit_mb
        if hard and mb >= hard:
            log.warning("worker %s uses %.0f MB > hard limit %.0f MB: killed",
                        handle.slot, mb, hard)
            self.kill(handle, Reason.MEMORY_LIMIT)
        elif soft and mb >= soft and not handle.leaving:
            handle.leaving = "recycle"
            if handle.state == "idle":
                self.send_stop(handle)
        self.bus.emit(Heartbeat(handle.slot, handle.pid or 0, round(mb, 1), handle.state,
                                handle.tasks_done))
