"""The session store: one signed-in session per site preset, owner-only on disk.

    DATA_DIR/sessions/               0700
        <site>/                      0700
            storage-state.json       0600  a Playwright storage state, or
            profile/                 0700  a signed-in Chromium user-data-dir

Files are written under a temporary name and moved into place, so a worker never
reads half a session. Every save and deletion is a ControlAction; neither the audit
trail nor the log ever holds a cookie value.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pool_core.session_check import BASE_PROFILE, STORAGE_STATE, CaptureResult, summarize_state
from poolsite.batches.models import ControlAction
from poolsite.sessions.models import SiteSession

log = logging.getLogger(__name__)
STATE_FILE = "storage-state.json"
PROFILE_DIR = "profile"
_SITE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")
Action = ControlAction.Action
Outcome = ControlAction.Outcome


def sessions_root() -> Path:
    """DATA_DIR/sessions, created owner-only."""
    return _private_dir(Path(settings.DATA_DIR) / "sessions")


def site_dir(site: str) -> Path:
    """The folder of one site's session, created owner-only."""
    if not _SITE_NAME.match(site) or site.startswith("."):
        raise ValueError(f"not a site preset name: {site[:60]!r}")
    sessions_root()
    return _private_dir(Path(settings.DATA_DIR) / "sessions" / site)


def staging_path(site: str, kind: str) -> Path:
    """A fresh name in the site's folder for a capture to write into."""
    suffix = secrets.token_hex(4)
    return site_dir(site) / (f".incoming-{suffix}.json" if kind == STORAGE_STATE
                             else f".incoming-{suffix}")


def session_for(site_name: str) -> tuple[str | None, str | None]:
    """(storage_state_path, base_profile_path) of the site's saved session, or Nones."""
    saved = SiteSession.objects.filter(site=site_name).first()
    if saved is None or not saved.full_path.exists():
        return None, None
    if saved.kind == SiteSession.Kind.BASE_PROFILE:
        return None, str(saved.full_path)
    return str(saved.full_path), None


def session_version(site_name: str, storage_state: str = "", base_profile: str = "") -> int:
    """When the session a host would use now was written (0: none), to spot a replacement.

    An explicit storage_state/base_profile wins over the site's saved session, as in
    HostSupervisor._build_pool.
    """
    if not (storage_state or base_profile):
        storage_state, base_profile = (p or "" for p in session_for(site_name))
    try:
        return os.stat(storage_state or base_profile).st_mtime_ns
    except OSError:
        return 0


def save_storage_state(site: str, state: dict[str, Any], *, user: Any = None,
                       username: str = "", source: str = SiteSession.Source.UPLOAD,
                       base_url: str = "", action: str = Action.UPLOAD_SESSION,
                       details: dict[str, Any] | None = None) -> SiteSession:
    """Save (or replace) a site's session from a storage-state dict."""
    staged = stage_storage_state(site, state)
    return adopt(site, staged, STORAGE_STATE, summarize_state(state, "saved"), user=user,
                 username=username, source=source, base_url=base_url, action=action,
                 details=details)


def stage_storage_state(site: str, state: dict[str, Any]) -> Path:
    """Write a storage state beside the site's session (owner-only), not yet in use.

    An upload is probed from here and adopted only when signed in; until then the
    working session stays in place.
    """
    staged = staging_path(site, STORAGE_STATE)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    return staged


def adopt(site: str, staged: Path, kind: str, summary: CaptureResult, *, user: Any = None,
          username: str = "", source: str = SiteSession.Source.CAPTURE, base_url: str = "",
          action: str = Action.CAPTURE_SESSION,
          details: dict[str, Any] | None = None) -> SiteSession:
    """Move a staged file/folder into place as the site's session; record who did it."""
    folder = site_dir(site)
    final = folder / (STATE_FILE if kind == STORAGE_STATE else PROFILE_DIR)
    other = folder / (PROFILE_DIR if kind == STORAGE_STATE else STATE_FILE)
    if kind == BASE_PROFILE:
        os.chmod(staged, 0o700)
        _remove(final)  # a folder cannot replace a folder atomically; workers clone at start
    os.replace(staged, final)
    _remove(other)
    now = timezone.now()
    name = username or getattr(user, "username", "") or ""
    probed = source != SiteSession.Source.UPLOAD  # a capture ends signed in; an upload is unchecked
    with transaction.atomic():
        saved, _ = SiteSession.objects.update_or_create(site=site, defaults=dict(
            kind=kind, source=source, path=f"{site}/{final.name}", base_url=base_url[:500],
            captured_at=now, captured_by=user if getattr(user, "is_authenticated", False)
            else None, captured_by_name=name[:150], cookie_count=summary.cookie_count,
            cookie_hosts=list(summary.hosts)[:50],
            earliest_expiry=_aware(summary.earliest_expiry),
            last_probe_at=now if probed else None, last_probe_ok=True if probed else None,
            last_probe_message=summary.message[:500] if probed else "",
            last_ok_at=now if probed else None))
        record(user, action, Outcome.DONE, f"session for {site} saved: {summary.cookie_count} "
               f"cookie(s) for {', '.join(summary.hosts) or 'no host'}", username=name,
               site=site, kind=kind, cookies=summary.cookie_count, **(details or {}))
    log.info("session for %s saved (%s, %d cookies, by %s)", site, kind,
             summary.cookie_count, name or "?")
    return saved


def delete_session(site: str, *, user: Any = None, username: str = "") -> bool:
    """Delete a site's saved session (file and row); False when there was none."""
    saved = SiteSession.objects.filter(site=site).first()
    if saved is None:
        record(user, Action.DELETE_SESSION, Outcome.REFUSED, f"no session for {site}",
               username=username, site=site)
        return False
    folder = site_dir(site)
    for name in (STATE_FILE, PROFILE_DIR):
        _remove(folder / name)
    with transaction.atomic():
        saved.delete()
        record(user, Action.DELETE_SESSION, Outcome.DONE, f"session for {site} deleted",
               username=username, site=site)
    log.info("session for %s deleted by %s", site, username or getattr(user, "username", "?"))
    return True


def record(user: Any, action: str, outcome: str, message: str, *, username: str = "",
           **arguments: Any) -> ControlAction:
    """Append a session action to the audit trail (never with a cookie value)."""
    if user is not None and getattr(user, "is_authenticated", False):
        return ControlAction.record(user, action, outcome=outcome, outcome_message=message,
                                    arguments=arguments)
    return ControlAction.objects.create(
        username=(username or "?")[:150], action=action, outcome=outcome,
        outcome_message=message, arguments=arguments, handled_at=timezone.now())


def _aware(epoch: float | None) -> datetime | None:
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask, and skipped when it exists
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
