"""Fixtures for engine tests: pools on a private temp folder, and the leftover check.

Every test that builds a pool (through `make_pool` or `roots_dir`) is checked
afterwards: no temp root of ours, no process naming it, no Chromium or Playwright
driver among this process's descendants, and none started during the test and orphaned
(reparented to init: a renderer whose browser was killed names no temp root).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pool_core import ProfileManager, WorkerPool
from pool_core.process_tree import is_gone, processes_naming
from pool_core.sites import SitePreset, load_presets
from pool_core.state import PoolStatus
from poolsite.demo_erp.server import DemoSite
from tests.presets import quick_render

BROWSERISH = ("chrom", "headless_shell", "node")


@pytest.fixture
def roots_dir(tmp_path: Path) -> Path:
    path = tmp_path / "roots"
    path.mkdir()
    return path


def leftovers(roots: Path, since: float = float("inf")) -> list[str]:
    """Describe every root, process naming the roots folder, or browser child left, and
    every browser process orphaned since `since` (a time.time())."""
    found = [f"root {p.name}" for p in roots.iterdir()] if roots.exists() else []
    found += [f"process {p.pid} naming {roots}" for p in processes_naming(str(roots))
              if not is_gone(p)]
    for child in psutil.Process().children(recursive=True):
        try:
            if not is_gone(child) and any(n in child.name().lower() for n in BROWSERISH):
                found.append(f"child {child.pid} {child.name()}")
        except psutil.Error:
            continue
    for proc in psutil.process_iter(["name", "ppid", "create_time"]):
        info = proc.info
        if (info["ppid"] == 1 and (info["create_time"] or 0) >= since and not is_gone(proc)
                and any(n in (info["name"] or "").lower() for n in BROWSERISH)):
            found.append(f"orphan {proc.pid} {info['name']}")
    return found


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    if "roots_dir" not in request.fixturenames:
        yield
        return
    roots: Path = request.getfixturevalue("roots_dir")
    began = time.time()
    yield
    deadline = time.monotonic() + 5
    while (found := leftovers(roots, began)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not found, f"left behind: {found}"


@pytest.fixture
def demo_preset(site: DemoSite) -> SitePreset:
    return quick_render(load_presets()["demo"].with_base_url(site.base_url))


@pytest.fixture
def make_pool(site: DemoSite, roots_dir: Path, tmp_path: Path,
              demo_preset: SitePreset) -> Iterator[Callable[..., WorkerPool]]:
    """Build pools on the demo site, signed in, with small timeouts; stopped afterwards."""
    pools: list[WorkerPool] = []

    def factory(size: int = 2, *, signed_in: bool = True, **options: Any) -> WorkerPool:
        manager = options.pop("profile_manager", None) or ProfileManager(
            temp_dir=str(roots_dir), storage_state=site.storage_state() if signed_in else None,
            min_free_disk_mb=options.pop("min_free_disk_mb", 50))
        defaults: dict[str, Any] = dict(
            profile_manager=manager, output_root=str(tmp_path / "out"), site=demo_preset,
            max_task_timeout=20, nav_timeout=15, startup_timeout=20, retry_backoff=0.1,
            memory_check_interval=0.5)
        defaults.update(options)
        pool = WorkerPool(size, **defaults)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        if pool.status is PoolStatus.ERROR:
            pool.reset()
        elif pool.status is not PoolStatus.IDLE:
            pool.stop_processing(timeout=5)
