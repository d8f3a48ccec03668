"""Is a site's session still signed in? Probe it, refuse a start without one, show it.

    request_control("start") ── start_refusal(batch) ── recent ok probe? ── yes: start
                                                          └─ no: probe_session in a
                                                             spawned child (one page)

A successful probe is trusted for PROBE_CACHE_SECONDS, so pressing start is quick. A
probe that cannot tell (site down, HTTP 5xx) lets the start through: the pool's own
outage handling deals with a failing site; only a login wall or a missing session
refuses.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from pool_core.browser import find_browser
from pool_core.errors import BrowserNotFoundError
from pool_core.session_check import ProbeRequest, ProbeResult, probe_session, run_isolated
from pool_core.sites import SitePreset, load_presets
from poolsite.sessions.models import SiteSession
from poolsite.sessions.store import session_for

log = logging.getLogger(__name__)
PROBE_CACHE_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 60.0
NOT_SIGNED_IN = "session for {site} is not signed in — capture it again"

# A runpool host given --storage-state/--base-profile runs every site on that session;
# in the embedded topology its web side probes that one instead of the store.
_host_session: dict[str, str] = {}
_explicit_ok: dict[tuple[str, str, str], float] = {}
_lock = threading.Lock()


def use_host_session(*, storage_state: str = "", base_profile: str = "") -> None:
    """Tell this process that its pool runs on an explicit session (runpool options)."""
    with _lock:
        _host_session.clear()
        if storage_state or base_profile:
            _host_session.update(storage_state=storage_state, base_profile=base_profile)


def presets() -> dict[str, SitePreset]:
    extra = settings.POOL_SITES_DIR
    return load_presets((Path(extra),) if extra else ())


def browser_path() -> str:
    return find_browser(settings.POOL_BROWSER_PATH or None)


def default_base_url(preset: SitePreset) -> str:
    """Where a site lives when nothing more specific is known.

    The configured Site of that preset changed last, else the demo's port for the demo,
    else the preset's own address. Sessions stay keyed by preset name.
    """
    from poolsite.batches.models import Site

    configured = (Site.objects.filter(preset=preset.name).order_by("-updated_at", "-id")
                  .values_list("base_url", flat=True).first())
    if configured:
        return str(configured)
    return settings.POOL_DEMO_URL if preset.name == "demo" else preset.base_url


def tenant_for(preset: SitePreset, base_url: str) -> SitePreset:
    """The preset at `base_url`, with a configured Site's hosts when one lives there."""
    from poolsite.batches.models import Site

    site = Site.objects.filter(preset=preset.name, base_url=base_url.rstrip("/")).first()
    if site is None:
        return preset.with_base_url(base_url)
    return preset.for_tenant(site.base_url, tuple(site.extra_hosts or ()))


def start_refusal(batch: Any) -> str | None:
    """Why `batch` may not start for lack of a signed-in session, or None."""
    if not settings.POOL_SESSION_PREFLIGHT:
        return None
    preset = presets().get(batch.site_preset)
    if preset is None or not preset.probe_url:
        return None  # nothing to probe with (e.g. generic public pages)
    base_url = _batch_base_url(batch, preset)
    with _lock:
        explicit = dict(_host_session)
    if explicit:
        result = _probe_explicit(preset, base_url, explicit)
    else:
        result = check_saved(preset.name, base_url=base_url)
    if result.signed_in is False:
        return f"{NOT_SIGNED_IN.format(site=preset.name)} ({result.message})"
    if result.signed_in is None:
        log.warning("could not check the session for %s before starting: %s", preset.name,
                    result.message)
    return None


def check_saved(site: str, *, base_url: str = "", force: bool = False) -> ProbeResult:
    """Probe the saved session of `site` (or trust a recent success) and record it."""
    saved = SiteSession.objects.filter(site=site).first()
    if saved is None or not saved.full_path.exists():
        return ProbeResult(False, "no session saved")
    now = timezone.now()
    fresh = now - timedelta(seconds=PROBE_CACHE_SECONDS)
    if (not force and saved.last_probe_ok and saved.last_probe_at is not None
            and saved.last_probe_at >= max(fresh, saved.captured_at)):
        return ProbeResult(True, "signed in (checked less than a minute ago)")
    preset = presets().get(site)
    if preset is None:
        return ProbeResult(None, f"no site preset {site!r}")
    storage_state, base_profile = session_for(site)
    result = probe(preset, base_url or saved.base_url or default_base_url(preset),
                   storage_state=storage_state or "", base_profile=base_profile or "")
    fields: dict[str, Any] = dict(last_probe_at=timezone.now(), last_probe_ok=result.signed_in,
                                  last_probe_message=result.message[:500])
    if result.signed_in:
        fields["last_ok_at"] = fields["last_probe_at"]
    SiteSession.objects.filter(pk=saved.pk).update(**fields)
    return result


def probe(preset: SitePreset, base_url: str, *, storage_state: str = "",
          base_profile: str = "") -> ProbeResult:
    """Open the preset's probe page with a session, in a spawned child process."""
    try:
        path = browser_path()
    except BrowserNotFoundError as exc:
        return ProbeResult(None, str(exc))
    request = ProbeRequest(site=tenant_for(preset, base_url), base_url=base_url,
                           browser_path=path, storage_state=storage_state,
                           base_profile=base_profile)
    started = time.monotonic()
    result: ProbeResult = run_isolated(probe_session, request, timeout_s=PROBE_TIMEOUT_SECONDS)
    log.info("session probe for %s: %s (%.1f s)", preset.name, result.message,
             time.monotonic() - started)
    return result


def site_sessions() -> list[dict[str, Any]]:
    """Each site's session, for the dashboard's snapshot and the sessions page (no secrets).

    One dict per preset that needs a session (it has a probe page) or has one saved:
    site, saved, state ("ok" | "unchecked" | "signed_out" | "expired" | "missing"),
    verdict (the last probe's answer: "signed in", "signed out", "expired", "could not
    tell", "not checked yet", "not signed in"), checked / checked_iso (when it was asked),
    answer (what a failed probe said), details (the rest), summary (all of it in one line
    for people), page (where to replace it) and, when saved: kind,
    source, captured_by, cookie_count, captured_at, earliest_expiry, last_probe_at,
    last_ok_at (epoch seconds or None), last_probe_ok, last_probe_message.
    """
    saved = {s.site: s for s in SiteSession.objects.all()}
    names = sorted({name for name, p in presets().items() if p.probe_url} | set(saved))
    page = reverse("site_sessions")
    now = timezone.now()
    return [_session_row(name, saved.get(name), now, page) for name in names]


def _session_row(site: str, saved: SiteSession | None, now: datetime, page: str
                 ) -> dict[str, Any]:
    if saved is None:
        return {"site": site, "saved": False, "state": "missing", "page": page,
                "verdict": "not signed in", "checked": "", "checked_iso": "", "answer": "",
                "details": "no session saved", "summary": "not signed in: no session saved"}
    # What the site said last (the probe's answer), then when it last worked: a session
    # the site has revoked must not read as "signed in".
    probed = saved.last_probe_at is not None
    if saved.expired_at(now):
        state, verdict = "expired", "expired"
    elif saved.last_probe_ok is False:
        state, verdict = "signed_out", "signed out"
    elif saved.last_probe_ok:
        state, verdict = "ok", "signed in"
    else:
        state, verdict = "unchecked", "could not tell" if probed else "not checked yet"
    answer = saved.last_probe_message if probed and not saved.last_probe_ok else ""
    parts = [f"captured {_when(saved.captured_at)} by {saved.captured_by_name or '?'}",
             f"{saved.cookie_count} cookie{'s' if saved.cookie_count != 1 else ''}",
             f"earliest expiry {_when(saved.earliest_expiry)}" if saved.earliest_expiry
             else "session cookies only"]
    if saved.last_ok_at and not saved.last_probe_ok:
        parts.insert(0, f"it last worked {_when(saved.last_ok_at)}")
    details = " · ".join(parts)
    checked = _when(saved.last_probe_at) if probed else ""
    head = verdict
    if probed:
        head += f" (checked {checked}{': ' + answer if answer else ''})"
    return {"site": site, "saved": True, "state": state, "page": page,
            "verdict": verdict, "checked": checked,
            "checked_iso": saved.last_probe_at.isoformat() if saved.last_probe_at else "",
            "answer": answer, "details": details, "summary": f"{head} · {details}",
            "kind": saved.kind, "source": saved.source,
            "captured_by": saved.captured_by_name, "cookie_count": saved.cookie_count,
            "captured_at": _epoch(saved.captured_at),
            "earliest_expiry": _epoch(saved.earliest_expiry),
            "last_probe_at": _epoch(saved.last_probe_at), "last_probe_ok": saved.last_probe_ok,
            "last_probe_message": saved.last_probe_message,
            "last_ok_at": _epoch(saved.last_ok_at)}


def _epoch(when: datetime | None) -> float | None:
    return None if when is None else round(when.timestamp(), 3)


def _when(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC") if when is not None else "?"


def _batch_base_url(batch: Any, preset: SitePreset) -> str:
    """Where the batch's POs live: its Site's address, its base URL, else a PO's origin."""
    if batch.site_id and batch.site:
        return str(batch.site.base_url)
    if batch.site_base_url:
        return str(batch.site_base_url)
    url = batch.pos.exclude(url="").values_list("url", flat=True).first()
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    saved = SiteSession.objects.filter(site=preset.name).values_list("base_url", flat=True)
    return next(iter(saved), "") or default_base_url(preset)


def _probe_explicit(preset: SitePreset, base_url: str, explicit: dict[str, str]) -> ProbeResult:
    key = (preset.name, base_url, explicit.get("storage_state", "")
           or explicit.get("base_profile", ""))
    with _lock:
        if time.monotonic() - _explicit_ok.get(key, -1e9) < PROBE_CACHE_SECONDS:
            return ProbeResult(True, "signed in (checked less than a minute ago)")
    result = probe(preset, base_url, storage_state=explicit.get("storage_state", ""),
                   base_profile=explicit.get("base_profile", ""))
    if result.signed_in:
        with _lock:
            _explicit_ok[key] = time.monotonic()
    return result
