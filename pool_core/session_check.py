"""Capture a signed-in site session, and probe whether a saved one is still signed in.

    poolsite (Django) ── run_isolated(probe_session, ProbeRequest) ──▶ spawned child
                                                                      ├─ Chromium with the
                                                                      │  session (guarded)
    ProbeResult / CaptureResult ◀── pipe (small frozen dataclasses) ──┘  opens probe_url

Playwright's sync API must never run in a process that uses Django's ORM, so both
jobs run in a child process (spawn) with its own temp root as TMPDIR
(`poolsite-session-<parent pid>-*`, with the owner's pid in owner.json); the parent
kills whatever is left of the child's browser by that root and removes it on every
way out. If the parent is killed outright, the child notices, closes its browser and
removes the root itself; if both die, the next sweep of stale temp roots
(ProfileManager.sweep_stale, at every pool start) does. Results carry counts and
hosts, never cookie values: the session itself goes only to the file the caller names.
While a capture waits, the child sends a CaptureProgress every PROGRESS_SECONDS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any
from urllib.parse import urlsplit

import psutil

from pool_core.process_tree import kill_tree, record_pids
from pool_core.profiles import SESSION_ROOT_PREFIX
from pool_core.sites import SitePreset

log = logging.getLogger(__name__)
STORAGE_STATE = "storage_state"
BASE_PROFILE = "base_profile"
POLL_SECONDS = 1.0
PROGRESS_SECONDS = 5.0  # a capture says what it sees this often while it waits


@dataclass(frozen=True)
class ProbeRequest:
    """Open the site's probe page with a saved session and say whether it is signed in."""

    site: SitePreset
    base_url: str
    browser_path: str
    storage_state: str = ""  # a Playwright storage-state file, or
    base_profile: str = ""  # a signed-in user-data-dir (cloned, never used in place)
    nav_timeout_s: float = 20.0


@dataclass(frozen=True)
class ProbeResult:
    """signed_in: True, False (a login wall), or None when the probe could not tell."""

    signed_in: bool | None
    message: str
    url: str = ""
    status: int = 0  # the HTTP status the probe page answered with (0: no answer)


@dataclass(frozen=True)
class CaptureRequest:
    """Open `start_url` and wait until the site's login detection says signed in."""

    site: SitePreset
    base_url: str
    browser_path: str
    start_url: str
    target: str  # the storage-state file, or the user-data-dir, to write
    kind: str = STORAGE_STATE
    headless: bool = True
    wait_s: float = 600.0
    nav_timeout_s: float = 20.0


@dataclass(frozen=True)
class CaptureResult:
    """What a capture saved (counts and hosts only, never cookie values)."""

    ok: bool
    message: str
    cookie_count: int = 0
    earliest_expiry: float | None = None  # epoch seconds; None: session cookies only
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaptureProgress:
    """What a waiting capture sees: the page's host, signed in or not, the probe."""

    elapsed_s: float
    wait_s: float
    page_host: str
    page_status: int  # HTTP status of the page's latest navigation (0: none seen)
    looks_signed_in: bool
    probe: str = ""  # the last probe's answer ("" while none was tried)
    probe_status: int = 0

    def line(self) -> str:
        page = f"the page is on {self.page_host or 'no host yet'}"
        if self.page_status:
            page += f" (HTTP {self.page_status})"
        state = "looks signed in" if self.looks_signed_in else "not signed in"
        if self.probe:
            answer = f"HTTP {self.probe_status}: " if self.probe_status else ""
            probe = f"probe answered {answer}{self.probe}"
        else:
            probe = "probe not tried yet (it runs once the page looks signed in)"
        return (f"waiting for sign-in ({self.elapsed_s:.0f} s of {self.wait_s:g} s): "
                f"{page}, {state}; {probe}")


def probe_url(site: SitePreset, base_url: str) -> str:
    """The page a probe opens: the preset's probe_url on `base_url`."""
    return site.probe_url.format(base=(base_url or site.base_url).rstrip("/"))


def run_isolated(fn: Callable[..., Any], request: Any, *, timeout_s: float,
                 stop: Event | None = None, temp_dir: str | None = None,
                 on_progress: Callable[[CaptureProgress], None] | None = None) -> Any:
    """Run `fn(request, stop, report)` in a spawned child; its result, or a failure on
    timeout. `on_progress` gets what the child reports while it works.

    The child's TMPDIR is a fresh root, so its Chromium can be found and killed by
    path whatever happens (Playwright starts the browser detached). The root goes on
    every way out, an exception (KeyboardInterrupt, a signal turned into one) included.
    """
    context = multiprocessing.get_context("spawn")
    root = tempfile.mkdtemp(prefix=f"{SESSION_ROOT_PREFIX}{os.getpid()}-", dir=temp_dir)
    reader = writer = None
    process = None
    child_done = False  # the child answered or died: no need to end it
    try:
        _write_owner(root)
        reader, writer = context.Pipe(duplex=False)
        process = context.Process(target=_child_main, args=(fn, request, stop, root, writer),
                                  name="session-check")
        process.start()
        writer.close()
        deadline = time.monotonic() + timeout_s
        while reader.poll(max(0.0, deadline - time.monotonic())):
            item = reader.recv()
            if isinstance(item, CaptureProgress):
                if on_progress is not None:
                    on_progress(item)
                continue
            child_done = True
            return item
        return _failure(fn, f"gave no answer within {timeout_s:g} s")
    except EOFError:
        child_done = True
        code = process.exitcode if process is not None else None
        return _failure(fn, f"the browser process died (exit code {code})")
    finally:
        if reader is not None:
            reader.close()
        if process is not None and process.pid is not None:
            if not child_done:  # still at work (timeout, Ctrl-C, SIGTERM): end it now
                kill_tree(process.pid, root)
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        kill_tree(None, root)
        shutil.rmtree(root, ignore_errors=True)


def _write_owner(root: str) -> None:
    """Say whose root this is, so a sweep can tell one whose owner died."""
    with open(os.path.join(root, "owner.json"), "w", encoding="utf-8") as handle:
        json.dump({"pid": os.getpid(), "create_time": psutil.Process().create_time()},
                  handle)


def _failure(fn: Callable[..., Any], why: str) -> Any:
    if fn is capture_session:
        return CaptureResult(ok=False, message=f"capture {why}")
    return ProbeResult(signed_in=None, message=f"session probe {why}")


def _child_main(fn: Callable[..., Any], request: Any, stop: Event | None, root: str,
                conn: Connection) -> None:
    # Ctrl-C reaches the whole process group: the parent ends this child and its
    # browser, and this child does not print a KeyboardInterrupt of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    record_pids(root, [os.getpid()])  # a sweep finds this process by its root
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp

    def report(item: CaptureProgress) -> None:
        with contextlib.suppress(OSError):  # the parent is gone; _orphaned() ends the wait
            conn.send(item)

    try:
        result = fn(request, stop, report)
    except Exception as exc:  # the process boundary: errors travel as data
        log.warning("session job failed", exc_info=True)
        result = _failure(fn, f"failed: {type(exc).__name__}: {str(exc)[:300]}")
    if _orphaned():  # killed outright, the parent removes nothing: clean up here
        kill_tree(None, root)
        shutil.rmtree(root, ignore_errors=True)
        return
    try:
        conn.send(result)
        conn.close()
    except OSError:
        log.debug("the parent left before the answer", exc_info=True)


def _orphaned() -> bool:
    """Whether the process that started this child has died."""
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


# -- in the child ----------------------------------------------------------------------------

def probe_session(request: ProbeRequest, stop: Event | None = None,
                  report: Callable[[CaptureProgress], None] | None = None) -> ProbeResult:
    """Open the probe page with the session; never raise for a site-level problem."""
    from playwright.sync_api import sync_playwright

    from pool_core.browser import launch_args
    from pool_core.profiles import ProfileManager

    url = probe_url(request.site, request.base_url)
    with sync_playwright() as pw:
        if request.base_profile:
            profiles = ProfileManager(base_profile=request.base_profile)
            root = profiles.create_root(0)
            context = pw.chromium.launch_persistent_context(
                root.profile_dir, executable_path=request.browser_path, headless=True,
                args=launch_args())
            browser = None
        else:
            browser = pw.chromium.launch(executable_path=request.browser_path,
                                         headless=True, args=launch_args())
            context = browser.new_context(storage_state=request.storage_state or None)
        try:
            return _probe_in(context, request.site, url, request.nav_timeout_s)
        finally:
            context.close()
            if browser is not None:
                browser.close()


def capture_session(request: CaptureRequest, stop: Event | None = None,
                    report: Callable[[CaptureProgress], None] | None = None
                    ) -> CaptureResult:
    """Wait until the browser is signed in (or `stop` is set), then save the session.

    Gives up at once when the probe page answers an HTTP error (no sign-in changes
    that), and reports what it sees every PROGRESS_SECONDS through `report`.
    """
    from playwright.sync_api import sync_playwright

    from pool_core.browser import launch_args

    with sync_playwright() as pw:
        browser = None
        if request.kind == BASE_PROFILE:
            context = pw.chromium.launch_persistent_context(
                request.target, executable_path=request.browser_path,
                headless=request.headless, args=launch_args())
        else:
            browser = pw.chromium.launch(executable_path=request.browser_path,
                                         headless=request.headless, args=launch_args())
            context = browser.new_context()
        try:
            context.set_default_timeout(request.nav_timeout_s * 1000)
            page = context.pages[0] if context.pages else context.new_page()
            watch = _PageStatus(page)
            page.goto(request.start_url, wait_until="load",
                      timeout=request.nav_timeout_s * 1000)
            verdict = _wait_signed_in(context, page, request, stop, report, watch)
            if not verdict.signed_in:
                return CaptureResult(ok=False, message=verdict.message)
            state: dict[str, Any] = dict(context.storage_state())
            if request.kind == STORAGE_STATE:
                _write_private_json(request.target, state)
            return summarize_state(state)
        finally:
            context.close()
            if browser is not None:
                browser.close()


class _PageStatus:
    """The HTTP status of a page's latest main-frame navigation."""

    def __init__(self, page: Any) -> None:
        self.status = 0
        page.on("response", self._seen)

    def _seen(self, response: Any) -> None:
        try:
            if response.request.is_navigation_request() and response.frame.parent_frame is None:
                self.status = int(response.status)
        except Exception:  # a detached frame: nothing to learn from it
            return


def _wait_signed_in(context: Any, page: Any, request: CaptureRequest, stop: Event | None,
                    report: Callable[[CaptureProgress], None] | None = None,
                    watch: _PageStatus | None = None) -> ProbeResult:
    """Poll the page; confirm a likely sign-in with the probe page before trusting it."""
    url = probe_url(request.site, request.base_url)
    started = time.monotonic()
    deadline = started + request.wait_s
    next_report = started
    last = ProbeResult(signed_in=False, message="not signed in yet")
    probed: ProbeResult | None = None
    while True:
        if _orphaned():
            return ProbeResult(False, "the command that started the capture is gone")
        pressed = stop is not None and stop.is_set()
        looks = _looks_signed_in(page, request.site)
        if pressed or looks:
            last = probed = _probe_in(context, request.site, url, request.nav_timeout_s)
            if last.signed_in or pressed:
                return last
            # An error page (not a sign-in page: some answer 401) does not turn into a
            # signed-in one however long we wait.
            if last.signed_in is None and last.status >= 400:
                return ProbeResult(None, f"{last.message}; gave up at once (is the site's "
                                   "address right?)", last.url, last.status)
        now = time.monotonic()
        if report is not None and now >= next_report:
            report(CaptureProgress(
                elapsed_s=now - started, wait_s=request.wait_s,
                page_host=urlsplit(page.url).hostname or "",
                page_status=watch.status if watch is not None else 0,
                looks_signed_in=looks, probe=probed.message if probed else "",
                probe_status=probed.status if probed else 0))
            next_report = now + PROGRESS_SECONDS
        if now > deadline:
            return ProbeResult(signed_in=False, message=(
                f"not signed in after {request.wait_s:g} s ({last.message})"))
        page.wait_for_timeout(POLL_SECONDS * 1000)


def _looks_signed_in(page: Any, site: SitePreset) -> bool:
    from playwright.sync_api import Error as PlaywrightError

    from pool_core.po_page import read_verdict

    host = (urlsplit(page.url).hostname or "").lower()
    if not host or not site.host_allowed(host):
        return False  # still at the identity provider (or a blank page)
    try:
        return not read_verdict(page, site).login
    except PlaywrightError:  # navigating; ask again at the next poll
        return False


def _probe_in(context: Any, site: SitePreset, url: str, nav_timeout_s: float) -> ProbeResult:
    """Open `url` in a new guarded page of `context` and classify it."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    from pool_core.po_page import read_verdict
    from pool_core.url_guard import RequestGuard

    problem = site.check_url(url)
    if problem:
        return ProbeResult(signed_in=None, message=f"probe page {url}: {problem}", url=url)
    guard = RequestGuard(site)
    guard.install(context)
    page = context.new_page()
    try:
        guard.watch(page)
        try:
            response = page.goto(url, wait_until="load", timeout=nav_timeout_s * 1000)
        except PlaywrightTimeoutError:
            return ProbeResult(None, f"the probe page {url} did not load within "
                               f"{nav_timeout_s:g} s", url)
        except PlaywrightError as exc:
            if guard.left_site:  # sent to a host off the allow-list: an SSO sign-in page
                host = urlsplit(guard.left_site[0][0]).hostname
                return ProbeResult(False, f"the probe page {url} sent the browser to {host} "
                                   "(a sign-in page off the allow-list)", url)
            return ProbeResult(None, f"the probe page {url} could not be opened: "
                               f"{str(exc).splitlines()[0][:200]}", url)
        verdict = read_verdict(page, site)
        status = response.status if response is not None else 0
        if verdict.login:
            return ProbeResult(False, f"the probe page {url} showed the sign-in page", url,
                               status)
        if status >= 400:
            return ProbeResult(None, f"the probe page {url} answered HTTP {status}", url,
                               status)
        if site.signed_in_selectors and not verdict.signed_in:
            return ProbeResult(None, f"the probe page {url} shows neither the sign-in page "
                               f"nor a signed-in marker ({', '.join(site.signed_in_selectors)})",
                               url, status)
        return ProbeResult(True, "signed in", url, status)
    finally:
        page.close()
        guard.remove()


def summarize_state(state: dict[str, Any], message: str = "signed in") -> CaptureResult:
    """Counts, hosts and earliest expiry of a storage state (no values)."""
    cookies = state.get("cookies", [])
    expiries = [float(c["expires"]) for c in cookies if float(c.get("expires", -1)) > 0]
    hosts = sorted({str(c.get("domain", "")).lstrip(".") for c in cookies})
    return CaptureResult(ok=True, message=message, cookie_count=len(cookies),
                         earliest_expiry=min(expiries) if expiries else None,
                         hosts=tuple(hosts))


def _write_private_json(path: str, data: Any) -> None:
    """Write owner-only (0600) from the start, never world-readable for an instant."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
