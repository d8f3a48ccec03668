"""The pool's state machine: one enum, one transition table, one transition()."""

from __future__ import annotations

import enum
import threading
import time


class PoolStatus(enum.StrEnum):
    """Where the pool is in its life (six states; docs/worker_pool.md draws them)."""

    IDLE = "IDLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPING = "STOPPING"
    ERROR = "ERROR"


# The transitions of docs/worker_pool.md; "-> ERROR" is added below for every other state.
TRANSITIONS: dict[PoolStatus, frozenset[PoolStatus]] = {
    PoolStatus.IDLE: frozenset({PoolStatus.STARTING}),
    PoolStatus.STARTING: frozenset({PoolStatus.RUNNING}),
    PoolStatus.RUNNING: frozenset({PoolStatus.PAUSED, PoolStatus.STOPPING}),
    PoolStatus.PAUSED: frozenset({PoolStatus.RUNNING}),
    PoolStatus.STOPPING: frozenset({PoolStatus.IDLE}),
    PoolStatus.ERROR: frozenset({PoolStatus.IDLE}),
}
TRANSITIONS = {
    state: targets | ({PoolStatus.ERROR} if state is not PoolStatus.ERROR else frozenset())
    for state, targets in TRANSITIONS.items()
}


def is_legal(old: PoolStatus, new: PoolStatus) -> bool:
    """Whether the state machine allows moving from `old` to `new`."""
    return new in TRANSITIONS[old]


class PoolStateMachine:
    """Holds the pool's state and the reason of the last move; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = PoolStatus.IDLE
        self._reason = ""
        self._since = time.time()

    @property
    def state(self) -> PoolStatus:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def since(self) -> float:
        return self._since

    def transition(self, new: PoolStatus, reason: str = "") -> PoolStatus:
        """Move to `new` and return the old state; RuntimeError (state unchanged) if illegal."""
        with self._lock:
            old = self._state
            if not is_legal(old, new):
                raise RuntimeError(f"illegal pool state transition {old} -> {new}")
            self._state = new
            self._reason = reason
            self._since = time.time()
            return old
