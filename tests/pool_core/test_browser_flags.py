"""The flags and priority every worker's browser gets, checked on the real processes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import sync_playwright

from pool_core import WorkerPool
from pool_core.browser import launch_args
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite


def _features(cmdline: list[str]) -> list[set[str]]:
    """Every --enable-features value on a command line, in order."""
    prefix = "--enable-features="
    return [set(arg[len(prefix):].split(",")) for arg in cmdline if arg.startswith(prefix)]


def test_our_enable_features_keeps_playwrights_and_moves_the_network_service_in(
        browser_path: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            page = browser.new_page()
            page.goto("about:blank")
            driver = next(p for p in psutil.Process().children() if p.name().startswith("node"))
            chromium = [p for p in driver.children(recursive=True) if "headless" in p.name()]
            main = next(p for p in chromium
                        if not any(a.startswith("--type=") for a in p.cmdline()))
            found = _features(main.cmdline())
            helpers = [" ".join(p.cmdline()) for p in chromium]
        finally:
            browser.close()
    # Chromium keeps only the last --enable-features: ours must hold Playwright's too.
    assert len(found) >= 2, found
    assert "NetworkServiceInProcess2" in found[-1]
    missing = set().union(*found[:-1]) - found[-1]
    assert not missing, f"Playwright enables features our flag would drop: {missing}"
    assert not [h for h in helpers if "--utility-sub-type=network.mojom" in h], helpers


def test_the_driver_and_browser_run_at_lower_priority_than_the_worker(
        site: DemoSite, make_pool: Callable[..., WorkerPool]) -> None:
    site.latency = 1.0  # a renderer is up while we look
    pool = make_pool(1, browser_nice=7)
    pool.start_processing(catalog.demo_batch(site.base_url, 2))
    worker = psutil.Process(pool.get_status()["worker_details"][0]["pid"])
    ours = psutil.Process().nice()
    expected = max(ours, 7)
    deadline = time.monotonic() + 20
    while not any("--type=renderer" in p.cmdline() for p in worker.children(recursive=True)):
        assert time.monotonic() < deadline, "no renderer started"
        time.sleep(0.05)
    tree = worker.children(recursive=True)
    assert worker.nice() == ours
    driver = next(p for p in tree if p.name().startswith("node"))
    assert {os.getpriority(os.PRIO_PROCESS, t.id) for t in driver.threads()} == {expected}
    # Every thread of every process: renderers started later inherit it from the zygote
    # or (lean mode, the default as root) from the browser, and Chromium, which as root
    # raises the threads it deems urgent to -8, is not allowed to (CAP_SYS_NICE dropped).
    threads = {}
    for proc in tree:
        for thread in proc.threads():
            with contextlib.suppress(OSError):  # (a thread that ended meanwhile)
                key = (proc.name(), _process_type(proc), thread.id)
                threads[key] = os.getpriority(os.PRIO_PROCESS, thread.id)
    assert any(kind == "renderer" for _, kind, _ in threads), threads
    assert set(threads.values()) == {expected}, threads
    # Chromium runs in a session of its own; with autogroup scheduling that session's
    # group must be lowered too, or the niceness above counts for nothing against us.
    # A process left in init's session shows "" (the root group), as the worker may here.
    browser_group = _autogroup(next(p for p in tree if _process_type(p) == "renderer").pid)
    if browser_group:  # the kernel has autogroups (CONFIG_SCHED_AUTOGROUP)
        worker_group = _autogroup(worker.pid)
        assert browser_group.split()[0] != (worker_group.split() or [""])[0], worker_group
        assert browser_group.split()[-1] == str(expected), browser_group
    assert pool.wait_until_done(60)


def _autogroup(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().strip()  # "/autogroup-85 nice 0"
    except OSError:
        return ""


def _process_type(proc: psutil.Process) -> str:
    return next((a.split("=", 1)[1] for a in proc.cmdline() if a.startswith("--type=")), "")


@pytest.mark.parametrize("bad", [-1, 20, 2.5, True])
def test_browser_nice_must_be_a_niceness(bad: object) -> None:
    with pytest.raises(ValueError, match="browser_nice"):
        WorkerPool(1, browser_nice=bad)  # type: ignore[arg-type]
