"""WorkerPool refuses what docs/worker_pool.md says it refuses, before any work starts:
bad sizes, configurations and PO lists, and illegal state transitions."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pool_core import (
    HeadlessConfiguration,
    PoolStatus,
    WorkerPool,
)
from pool_core.state import TRANSITIONS, PoolStateMachine, is_legal
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite

STATUS_KEYS = {"pool_status", "active_workers", "tasks_pending", "tasks_active",
               "tasks_completed", "tasks_failed", "worker_details", "performance_metrics"}
WORKER_KEYS = {"id", "pid", "state", "current_po", "phase", "started_at", "tasks_done",
               "restarts", "memory_mb"}
PoolFactory = Callable[..., WorkerPool]




def test_it_imports_without_django() -> None:
    code = ("import sys, pool_core, pool_core.pool, pool_core.worker, pool_core.dispatcher; "
            "assert 'django' not in sys.modules, 'django imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("size", [0, 9, -1, "4", 2.0, True, None])
def test_it_rejects_bad_pool_sizes(size: object) -> None:
    with pytest.raises(ValueError, match="pool size"):
        WorkerPool(size)  # type: ignore[arg-type]


def test_it_checks_the_headless_configuration() -> None:
    with pytest.raises(TypeError, match="HeadlessConfiguration"):
        WorkerPool(2, headless_config={"headless": True})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no display"):
        WorkerPool(2, headless_config=HeadlessConfiguration(headless=False))
    fallback = HeadlessConfiguration(headless=False, fallback_to_headless=True)
    assert fallback.effective_headless() is True
    assert HeadlessConfiguration(headless=False, display=":0").effective_headless() is False
    assert WorkerPool(2).status is PoolStatus.IDLE  # headless by default, keyword-only rest


def test_it_rejects_an_unimportable_process_fn() -> None:
    with pytest.raises(ValueError, match="process_fn"):
        WorkerPool(1, process_fn="pool_core.nowhere:nothing")


def test_it_allows_exactly_the_documented_transitions() -> None:
    legal = {(PoolStatus.IDLE, PoolStatus.STARTING), (PoolStatus.STARTING, PoolStatus.RUNNING),
             (PoolStatus.RUNNING, PoolStatus.PAUSED), (PoolStatus.PAUSED, PoolStatus.RUNNING),
             (PoolStatus.RUNNING, PoolStatus.STOPPING), (PoolStatus.STOPPING, PoolStatus.IDLE),
             (PoolStatus.ERROR, PoolStatus.IDLE)}
    legal |= {(s, PoolStatus.ERROR) for s in PoolStatus if s is not PoolStatus.ERROR}
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == legal
    for old, new in itertools.product(PoolStatus, repeat=2):
        machine = PoolStateMachine()
        machine._state = old  # put it there directly, to test every pair
        if (old, new) in legal:
            assert is_legal(old, new)
            assert machine.transition(new) is old and machine.state is new
        else:
            with pytest.raises(RuntimeError, match="illegal"):
                machine.transition(new)
            assert machine.state is old


@pytest.mark.parametrize(("patch", "message"), [
    ({"po_number": ""}, r"po_list\[1\]\.po_number"),
    ({"supplier": None}, r"po_list\[1\]\.supplier: missing"),
    ({"url": "file:///etc/passwd"}, r"po_list\[1\]\.url"),
    ({"amount": "12,5"}, r"po_list\[1\]\.amount"),
    ({"amount": float("nan")}, r"po_list\[1\]\.amount"),
    ({"amount": True}, r"po_list\[1\]\.amount"),
])
def test_it_validates_every_po_before_starting(
        site: DemoSite, make_pool: PoolFactory, roots_dir: Path, patch: dict,
        message: str) -> None:
    pool = make_pool(1)
    batch = catalog.demo_batch(site.base_url, 3)
    batch[1] = {**batch[1], **patch}
    with pytest.raises(ValueError, match=message):
        pool.start_processing(batch)
    assert pool.status is PoolStatus.IDLE
    assert not list(roots_dir.iterdir())


def test_it_rejects_empty_and_duplicate_lists(site: DemoSite, make_pool: PoolFactory) -> None:
    pool = make_pool(1)
    with pytest.raises(ValueError, match="empty"):
        pool.start_processing([])
    batch = catalog.demo_batch(site.base_url, 2)
    with pytest.raises(ValueError, match=r"po_list\[1\]\.po_number: duplicate"):
        pool.start_processing([batch[0], batch[0]])
    assert pool.status is PoolStatus.IDLE
