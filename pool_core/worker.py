"""The worker process: one Playwright driver and one Chromium, one PO at a time.

    dispatcher ──Task / None (stop)──▶ worker_main ──▶ process_fn(page, task, job)
    dispatcher ◀──Ready / StartupFailed / TaskReceived / Phase / TaskDone── worker

Only pool_core.messages values cross the pipe. This module holds the process's entry
point (worker_main), how worker processes are made (process_context, the fork server)
and the worker's browser session; OS priority lives in pool_core.priority.
The worker keeps one page (its tab, in a context of its own) from PO to PO while POs
end well: a new page costs a new renderer process, about half the CPU of a PO. After
each PO the renderer's garbage is collected, and the tab is handed to the next PO as
it is: that PO's navigation replaces the document (going to about:blank in between
cost ~29 ms of CPU per PO, a fifth of it; bench/bench_pool.py). A job must therefore
not take the page it is handed for its PO's page (processing.py checks). Any
other ending (a failure, a timeout, a sign-in wall, a page the job left open) closes
the context, and the next PO gets a fresh one; so does a worker left without work for
TAB_IDLE_RELEASE_S. The browser itself is relaunched every
`recycle_browser_after` POs, which also bounds what a long-lived context keeps
(Playwright holds request objects until a context closes).
If the browser dies under a task, the worker reports the task as retryable and exits;
the dispatcher starts a replacement on a fresh temp root.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import psutil

from pool_core.config import JobEnv, WorkerSpec
from pool_core.egress_proxy import EgressFailure, EgressProxy
from pool_core.errors import says_target_closed
from pool_core.messages import (
    EXIT_BROWSER_DIED,
    EXIT_PARENT_DIED,
    EXIT_STARTUP_FAILED,
    Phase,
    POStatus,
    Ready,
    StartupFailed,
    Task,
    TaskDone,
    TaskReceived,
    TaskResult,
)
from pool_core.priority import forbid_raising_priority, lower_priority
from pool_core.process_tree import (
    WORKER_NAME_PREFIX,
    is_browser_main,
    is_gone,
    kill_tree,
    name_process,
    record_pids,
    wait_gone,
)
from pool_core.profiles import WorkerRoot
from pool_core.reasons import Reason

if TYPE_CHECKING:  # (Windows has no ForkServerContext to import at run time)
    from multiprocessing.context import ForkServerContext, SpawnContext

    from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, Playwright

# Modules a fork server imports once, so a worker forked from it starts with them loaded.
FORKSERVER_PRELOAD = ["pool_core.worker", "playwright.sync_api", "pool_core.processing",
                      "pool_core.simple_job"]
log = logging.getLogger(__name__)
# Outcomes after which the page is known to be in order, so the next PO may use it.
TAB_KEPT_AFTER = (POStatus.COMPLETED, POStatus.PARTIAL, POStatus.NO_ATTACHMENTS,
                  POStatus.PO_NOT_FOUND, POStatus.ACCESS_DENIED)
# A worker without a task for this long closes its page: its renderer (~35 MB PSS) is
# only worth keeping while POs follow each other (the next one arrives within ms).
TAB_IDLE_RELEASE_S = 2.0
BROWSER_EXIT_WAIT_S = 0.5  # how long a "closed" error waits for the browser to exit


def split_process_fn(dotted: str) -> tuple[str, str]:
    """Split "package.module:function" (or "package.module.function"); ValueError if bad."""
    module_name, sep, attr = dotted.partition(":")
    if not sep:
        module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"process_fn {dotted!r} is not a dotted path 'package.module:func'")
    try:
        found = importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ValueError(f"process_fn {dotted!r}: no module named {module_name!r}")
    return module_name, attr


def resolve_process_fn(dotted: str) -> Callable[..., TaskResult]:
    """Import "package.module:function" (or "package.module.function")."""
    module_name, attr = split_process_fn(dotted)
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"process_fn {dotted!r} cannot be imported: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"process_fn {dotted!r} is not callable")
    return fn


def process_context() -> SpawnContext | ForkServerContext:
    """How worker processes are made: forked from a fork server where there is one.

    The fork server is a small single-threaded process (safe to fork, unlike the
    threaded host) that has imported Playwright already. A worker forked from it skips
    a new interpreter and its imports, ~0.3 s of CPU that four workers starting
    together on two cores feel, and shares those modules' memory pages (~7 MB PSS less
    per worker; bench/bench_pool.py). Like a spawned worker it never holds Django: the
    fork server is a fresh interpreter too. Everything a worker needs travels in
    WorkerSpec, never through the environment, which is the fork server's from when it
    started. If the fork server dies, Python starts a new one for the next worker.
    Elsewhere (no fork server on the platform) workers are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    return context


def start_fork_server() -> None:
    """Start the fork server now (once per host process; ~0.5 s), not in a worker's
    start-up."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        process_context()
        multiprocessing.forkserver.ensure_running()


def worker_main(worker_id: int, spec: WorkerSpec, root: WorkerRoot, conn: Connection) -> None:
    """Entry point of a worker process (see process_context)."""
    steps = [("interpreter", time.monotonic())]
    name_process(f"{WORKER_NAME_PREFIX}{worker_id}")
    _prepare_environment(spec, root)
    if spec.browser_nice > 0:
        forbid_raising_priority()
    _exit_with_parent(root)
    try:
        process_fn = resolve_process_fn(spec.process_fn)
        from playwright.sync_api import sync_playwright

        steps.append(("imports", time.monotonic()))
        playwright = sync_playwright().start()
        steps.append(("driver", time.monotonic()))
    except BaseException as exc:
        _report_startup_failure(conn, exc)
        os._exit(EXIT_STARTUP_FAILED)
    # Every connection of the browser goes through the site's pinning proxy.
    proxy = EgressProxy(spec.site.connect_addresses).start() if spec.site else None
    session = _BrowserSession(playwright, spec, root, proxy)
    try:
        session.launch()
    except BaseException as exc:
        _report_startup_failure(conn, exc)
        os._exit(EXIT_STARTUP_FAILED)
    steps.append(("browser", time.monotonic()))
    conn.send(Ready(pid=os.getpid(), at=time.monotonic(), steps=tuple(steps)))
    exitcode = _serve(worker_id, spec, root, conn, session, process_fn)
    if exitcode:
        os._exit(exitcode)
    session.close()
    playwright.stop()


def _serve(worker_id: int, spec: WorkerSpec, root: WorkerRoot, conn: Connection,
           session: _BrowserSession, process_fn: Callable[..., TaskResult]) -> int:
    """Run tasks until told to stop; return an exit code (0: stop cleanly)."""
    while True:
        try:
            if session.tab is not None and not conn.poll(TAB_IDLE_RELEASE_S):
                session.close_tab()  # idle: hand back the renderer's memory
            task = conn.recv()
        except (EOFError, OSError):
            return EXIT_PARENT_DIED
        if task is None:
            return 0
        received = time.monotonic()
        conn.send(TaskReceived(key=task.key, at=received))
        session.egress_failures()  # the previous PO's are not this one's
        job = JobEnv(worker_id=worker_id, output_root=spec.output_root, work_root=root.work_dir,
                     evidence_dir=spec.evidence_dir, site=spec.site,
                     nav_timeout_s=spec.nav_timeout_s,
                     download_timeout_s=spec.download_timeout_s,
                     report_phase=_phase_reporter(conn, task.key),
                     egress_failures=session.egress_failures)
        result = session.run(process_fn, task, job)
        exiting = not session.alive()
        conn.send(TaskDone(result=result, seconds=time.monotonic() - received,
                           at=time.monotonic(), exiting=exiting))
        if exiting:
            return EXIT_BROWSER_DIED
        if session.due_for_recycle():
            session.close()
            session.launch()


def _is_driver(proc: psutil.Process) -> bool:
    try:
        return proc.name().startswith("node")
    except psutil.Error:
        return False


class _BrowserSession:
    """The worker's browser: launched, handed out per task, recycled, closed."""

    def __init__(self, playwright: Playwright, spec: WorkerSpec, root: WorkerRoot,
                 proxy: EgressProxy | None = None) -> None:
        self.playwright = playwright
        self.proxy = proxy
        self.spec = spec
        self.root = root
        self.browser: Browser | None = None
        self.persistent: BrowserContext | None = None
        self.tab: Page | None = None  # kept from PO to PO (module docstring)
        self.tab_cdp: CDPSession | None = None  # the tab's DevTools session (_collect_garbage)
        self.tasks_since_launch = 0
        self.crashed = False
        self.browser_main: psutil.Process | None = None  # the Chromium process proper

    def launch(self) -> None:
        chromium = self.playwright.chromium
        common: dict[str, Any] = dict(executable_path=self.spec.browser_path,
                                      args=[*self.spec.browser_args,
                                            *(self.proxy.browser_args() if self.proxy else ())],
                                      headless=self.spec.headless,
                                      timeout=self.spec.launch_timeout_s * 1000)
        if self.root.persistent_profile:
            self.persistent = chromium.launch_persistent_context(
                self.root.profile_dir, accept_downloads=True, **common)
            self.persistent.on("close", lambda _ctx: self._mark_crashed())
        else:
            self.browser = chromium.launch(**common)
            self.browser.on("disconnected", lambda _b: self._mark_crashed())
        self.crashed = False
        self.tasks_since_launch = 0
        children = psutil.Process().children(recursive=True)
        record_pids(self.root.path, [os.getpid()] + [p.pid for p in children])
        self.browser_main = next((p for p in children if is_browser_main(p)), None)
        lower_priority(children, self.spec.browser_nice)

    def egress_failures(self) -> list[EgressFailure]:
        return self.proxy.take_failures() if self.proxy else []

    def _mark_crashed(self) -> None:
        self.crashed = True

    def alive(self) -> bool:
        return not self.crashed

    def due_for_recycle(self) -> bool:
        n = self.spec.recycle_browser_after
        return n > 0 and self.tasks_since_launch >= n

    def run(self, process_fn: Callable[..., TaskResult], task: Task, job: JobEnv) -> TaskResult:
        """Run one task on the worker's tab; turn any exception into a TaskResult."""
        self.tasks_since_launch += 1
        try:
            page = self._tab()
        except Exception as exc:
            # The browser died while the worker was idle: the PO never started.
            result = self._exception_result(task, exc)
            self.close_tab()  # whatever broke, the next PO starts on a new page
            if result.reason == Reason.BROWSER_CRASH:
                return replace(result, reason=Reason.BROWSER_LOST_BEFORE_START)
            return result
        try:
            result = process_fn(page, task, job)
            if not isinstance(result, TaskResult):
                raise TypeError(f"process_fn returned {type(result).__name__}, not TaskResult")
        except Exception as exc:
            result = self._exception_result(task, exc)
        if self.crashed and result.status is not POStatus.LOGIN_REQUIRED:
            result = replace(result, status=POStatus.FAILED, reason=Reason.BROWSER_CRASH,
                             retryable=True, message=result.message or "the browser died")
        if not (self._keeps_tab(page, result) and self._collect_garbage()):
            self.close_tab()
        return result

    def _tab(self) -> Page:
        """The worker's page: the one kept from the last PO, or a new one."""
        if self.tab is not None:
            # One round trip: a browser lost while the worker was idle shows here, before
            # the PO starts (not charged), not halfway through it.
            self.tab.evaluate("0")
            return self.tab
        if self.persistent is not None:
            context = self.persistent
        else:
            assert self.browser is not None
            context = self.browser.new_context(
                accept_downloads=True, storage_state=self.root.storage_state or None)
        context.set_default_timeout(self.spec.nav_timeout_s * 1000)
        context.set_default_navigation_timeout(self.spec.nav_timeout_s * 1000)
        # A persistent context opens with a page of its own: that one becomes the tab.
        self.tab = context.pages[0] if context.pages else context.new_page()
        self.tab_cdp = context.new_cdp_session(self.tab)  # (the engine drives Chromium only)
        return self.tab

    def _collect_garbage(self) -> bool:
        """Collect the renderer's garbage, so a kept tab does not grow from PO to PO.

        Each navigation leaves the old document's objects in the renderer's V8 heap, and
        a headless renderer that never idles does not collect them: its PSS grew ~1.5 MB
        per PO (83 -> 172 MB over 60 POs). One full collection after each PO keeps it flat
        (~74 MB) for ~11 ms (bench/bench_pool.py, memory table). False: close the tab.
        """
        if self.tab_cdp is None:
            return False
        try:
            self.tab_cdp.send("HeapProfiler.collectGarbage")
            return True
        except Exception:
            return False

    def _keeps_tab(self, page: Page, result: TaskResult) -> bool:
        """Whether the next PO may use this page: the PO ended well and left no other."""
        if self.crashed or result.status not in TAB_KEPT_AFTER or result.retryable:
            return False
        return not page.is_closed() and page.context.pages == [page]  # (no round trips)

    def close_tab(self) -> None:
        page, self.tab, self.tab_cdp = self.tab, None, None
        if page is None or self.crashed:
            return
        try:
            context = page.context
            if context is self.persistent:
                for each in list(context.pages):
                    each.close()
            else:
                context.close()
        except Exception:
            self.crashed = self.crashed or not self._connected()

    def _connected(self) -> bool:
        # A killed driver (node) closes the connection without a "disconnected" event,
        # and is_connected() keeps saying True: check the process itself.
        if not self._driver_alive():
            return False
        if self.browser is not None:
            return self.browser.is_connected()
        return self.persistent is not None and not self.crashed

    def _browser_exited(self) -> bool:
        """Whether the browser process has exited (a zombie counts).

        A call waiting on a page (wait_for_event, a download) fails as soon as the page
        closes, and Playwright can hand the worker that error before it dispatches the
        browser's "disconnected" event: the process is the sure sign. Its pipe closes as
        it exits, so by the time Playwright has seen that, the process is (nearly) gone.
        """
        if self.browser_main is None:
            return False
        return not wait_gone([self.browser_main], BROWSER_EXIT_WAIT_S)

    def _driver_alive(self) -> bool:
        drivers = [p for p in psutil.Process().children() if _is_driver(p)]
        return bool(drivers) and not any(is_gone(p) for p in drivers)

    def _exception_result(self, task: Task, exc: Exception) -> TaskResult:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        tb = traceback.format_exc()
        if self.crashed or not self._connected() or (
                says_target_closed(exc) and self._browser_exited()):
            self.crashed = True
            return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.FAILED,
                              reason=Reason.BROWSER_CRASH, message=str(exc)[:500], retryable=True,
                              remote_traceback=tb)
        if isinstance(exc, PlaywrightTimeout):
            return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.FAILED,
                              reason=Reason.PLAYWRIGHT_TIMEOUT, message=str(exc)[:500],
                              retryable=True, remote_traceback=tb)
        return TaskResult(key=task.key, po_number=task.po_number, status=POStatus.FAILED,
                          reason=Reason.JOB_ERROR, message=f"{type(exc).__name__}: {exc}"[:500],
                          remote_traceback=tb)

    def close(self) -> None:
        self.tab, self.tab_cdp = None, None
        try:
            if self.persistent is not None:
                self.persistent.close()
            if self.browser is not None:
                self.browser.close()
        except Exception:
            pass  # the dispatcher kills whatever is left and removes the root
        self.browser = None
        self.persistent = None


def _prepare_environment(spec: WorkerSpec, root: WorkerRoot) -> None:
    # The driver and Chromium inherit this environment: their temp folders land in the
    # root, so a SIGKILLed tree leaves nothing outside it.
    os.environ["TMPDIR"] = root.tmp_dir
    tempfile.tempdir = None
    if spec.node_options:
        os.environ["NODE_OPTIONS"] = spec.node_options
    if spec.node_compile_cache:
        # Node's on-disk code cache: the driver loads Playwright's JS ~25% cheaper.
        os.environ["NODE_COMPILE_CACHE"] = spec.node_compile_cache


def _exit_with_parent(root: WorkerRoot) -> None:
    """Kill this worker's tree and exit when the pool's process dies."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        kill_tree(None, root.path, timeout=1.0)
        os._exit(EXIT_PARENT_DIED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _phase_reporter(conn: Connection, key: str) -> Callable[[str], None]:
    def report_phase(phase: str) -> None:
        conn.send(Phase(key=key, phase=str(phase)[:100]))

    return report_phase


def _report_startup_failure(conn: Connection, exc: BaseException) -> None:
    with contextlib.suppress(OSError, ValueError):
        conn.send(StartupFailed(message=f"{type(exc).__name__}: {exc}"[:1000],
                                remote_traceback=traceback.format_exc()))
