"""Capture a signed-in site session, and probe whether a saved one is still signed in.

    poolsite (Django) ── run_isolated(probe_session, ProbeRequest) ──▶ spawned child
                                                                      ├─ Chromium with the
                                                                      │  session (guarded)
    ProbeResult / CaptureResult ◀── pipe (small frozen dataclasses) ──┘  opens probe_url

Playwright's sync API must never run in a process that uses Django's ORM, so both
jobs run in a child process (spawn) with its own temp root as TMPDIR; the parent
kills whatever is left of the child's browser by that root. Results carry counts and
hosts, never cookie values: the session itself goes only to the file the caller names.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any
from urllib.parse import urlsplit

from pool_core.process_tree import kill_tree
from pool_core.sites import SitePreset

log = logging.getLogger(__name__)
STORAGE_STATE = "storage_state"
BASE_PROFILE = "base_profile"
POLL_SECONDS = 1.0


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


def probe_url(site: SitePreset, base_url: str) -> str:
    """The page a probe opens: the preset's probe_url on `base_url`."""
    return site.probe_url.format(base=(base_url or site.base_url).rstrip("/"))


def run_isolated(fn: Callable[..., Any], request: Any, *, timeout_s: float,
                 stop: Event | None = None, temp_dir: str | None = None) -> Any:
    """Run `fn(request, stop)` in a spawned child; its result, or a failure on timeout.

    The child's TMPDIR is a fresh root, so its Chromium can be found and killed by
    path whatever happens (Playwright starts the browser detached).
    """
    context = multiprocessing.get_context("spawn")
    root = tempfile.mkdtemp(prefix="poolsite-session-", dir=temp_dir)
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(fn, request, stop, root, writer),
                              name="session-check")
    try:
        process.start()
        writer.close()
        if reader.poll(timeout_s):
            return reader.recv()
        return _failure(fn, f"gave no answer within {timeout_s:g} s")
    except EOFError:
        return _failure(fn, f"the browser process died (exit code {process.exitcode})")
    finally:
        reader.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)
        kill_tree(None, root)
        shutil.rmtree(root, ignore_errors=True)


def _failure(fn: Callable[..., Any], why: str) -> Any:
    if fn is capture_session:
        return CaptureResult(ok=False, message=f"capture {why}")
    return ProbeResult(signed_in=None, message=f"session probe {why}")


def _child_main(fn: Callable[..., Any], request: Any, stop: Event | None, root: str,
                conn: Connection) -> None:
    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    try:
        result = fn(request, stop)
    except Exception as exc:  # the process boundary: errors travel as data
        log.warning("session job failed", exc_info=True)
        result = _failure(fn, f"failed: {type(exc).__name__}: {str(exc)[:300]}")
    conn.send(result)
    conn.close()


# -- in the child ----------------------------------------------------------------------------

def probe_session(request: ProbeRequest, stop: Event | None = None) -> ProbeResult:
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


def capture_session(request: CaptureRequest, stop: Event | None = None) -> CaptureResult:
    """Wait until the browser is signed in (or `stop` is set), then save the session."""
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
            page.goto(request.start_url, wait_until="load",
                      timeout=request.nav_timeout_s * 1000)
            verdict = _wait_signed_in(context, page, request, stop)
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


def _wait_signed_in(context: Any, page: Any, request: CaptureRequest,
                    stop: Event | None) -> ProbeResult:
    """Poll the page; confirm a likely sign-in with the probe page before trusting it."""
    url = probe_url(request.site, request.base_url)
    deadline = time.monotonic() + request.wait_s
    last = ProbeResult(signed_in=False, message="not signed in yet")
    while True:
        pressed = stop is not None and stop.is_set()
        if pressed or _looks_signed_in(page, request.site):
            last = _probe_in(context, request.site, url, request.nav_timeout_s)
            if last.signed_in or pressed:
                return last
        if time.monotonic() > deadline:
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
        if verdict.login:
            return ProbeResult(False, f"the probe page {url} showed the sign-in page", url)
        status = response.status if response is not None else 0
        if status >= 400:
            return ProbeResult(None, f"the probe page {url} answered HTTP {status}", url)
        if site.signed_in_selectors and not verdict.signed_in:
            return ProbeResult(None, f"the probe page {url} shows neither the sign-in page "
                               f"nor a signed-in marker ({', '.join(site.signed_in_selectors)})",
                               url)
        return ProbeResult(True, "signed in", url)
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
