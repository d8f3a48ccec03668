"""Capture a signed-in session into the store: by hand, by a scripted URL, for the demo.

    capture_session command / runpool --with-demo-site
        └─ capture(site, start_url) ── run_isolated(capture_session) ─▶ child: Chromium
           waits until the site's login detection says signed in, writes the session
           into a staged path ─▶ store.adopt() moves it into place + ControlAction
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from pool_core.session_check import (
    STORAGE_STATE,
    CaptureProgress,
    CaptureRequest,
    CaptureResult,
    capture_session,
    run_isolated,
)
from pool_core.sites import SitePreset
from poolsite.batches.models import ControlAction
from poolsite.sessions import store
from poolsite.sessions.health import (
    browser_path,
    check_saved,
    default_base_url,
    presets,
    tenant_for,
)
from poolsite.sessions.models import SiteSession

log = logging.getLogger(__name__)
CAPTURE_GRACE_SECONDS = 90.0  # browser start-up and saving, beyond the sign-in wait


class CaptureError(Exception):
    """A capture that did not end signed in; the message says what the browser saw."""


def capture(site: str, *, start_url: str = "", base_url: str = "", headless: bool = True,
            kind: str = STORAGE_STATE, wait_s: float = 600.0, executable: str = "",
            user: Any = None, username: str = "",
            source: str = SiteSession.Source.CAPTURE, stop: Event | None = None,
            on_progress: Callable[[CaptureProgress], None] | None = None) -> SiteSession:
    """Open the site, wait for a signed-in browser, save its session; CaptureError if not.

    `on_progress` hears what the browser sees every few seconds while it waits.
    """
    preset = _preset(site)
    base_url = (base_url or _origin(start_url) or default_base_url(preset)).rstrip("/")
    start_url = start_url or login_url(preset, base_url)
    tenant = tenant_for(preset, base_url)
    problem = tenant.check_url(start_url)
    if problem:
        raise CaptureError(f"cannot open {start_url[:200]}: {problem}")
    staged = store.staging_path(site, kind)
    request = CaptureRequest(site=tenant, base_url=base_url,
                             browser_path=executable or browser_path(), start_url=start_url,
                             target=str(staged), kind=kind, headless=headless,
                             wait_s=wait_s)
    try:
        result: CaptureResult = run_isolated(capture_session, request, stop=stop,
                                             timeout_s=wait_s + CAPTURE_GRACE_SECONDS,
                                             on_progress=on_progress)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): nothing half-written stays
        _discard(staged)
        raise
    if not result.ok or not staged.exists():
        _discard(staged)
        message = f"capture for {site} failed: {result.message}"
        store.record(user, ControlAction.Action.CAPTURE_SESSION,
                     ControlAction.Outcome.FAILED, message, username=username, site=site)
        raise CaptureError(message)
    return store.adopt(site, staged, kind, result, user=user, username=username,
                       source=source, base_url=base_url,
                       details={"via": "sign-in URL" if headless else "browser"})


def login_url(preset: SitePreset, base_url: str) -> str:
    """Where an operator signs in: the probe page, which sends a stranger to sign in."""
    return preset.probe_url.format(base=base_url) if preset.probe_url else base_url + "/"


def ensure_demo_session(demo: Any) -> SiteSession:
    """`make run`: keep a still-valid demo session, else sign in through /sessions/auto."""
    saved = SiteSession.objects.filter(site="demo").first()
    if saved is not None and check_saved("demo", base_url=demo.base_url,
                                         force=True).signed_in:
        return saved
    return capture("demo", start_url=demo.signin_url("/order_headers"),
                   base_url=demo.base_url, headless=True, wait_s=30,
                   username="runpool --with-demo-site", source=SiteSession.Source.DEMO)


def demo_secret() -> str:
    """The demo site's signing secret, kept owner-only so its sessions survive restarts."""
    path = Path(settings.DATA_DIR) / "demo-site-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _preset(site: str) -> SitePreset:
    preset = presets().get(site)
    if preset is None:
        raise CaptureError(f"no site preset {site!r} (known: {', '.join(sorted(presets()))})")
    return preset


def _discard(staged: Path) -> None:
    if staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    else:
        staged.unlink(missing_ok=True)
