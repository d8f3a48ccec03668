"""The loaded site presets, and the rules a configured Site's address and hosts follow.

Kept apart from models.py so the model, the forms and the importer share one rule
without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from pool_core.sites import SitePreset, load_presets

DEFAULT_DEMO_URL = "http://127.0.0.1:8001"
# One DNS label; a host is labels joined by dots, optionally behind "*." (a whole domain).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_RE = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}$")
MAX_EXTRA_HOSTS = 20


def site_presets() -> dict[str, SitePreset]:
    """Return the site presets, the demo one pointing at this deployment's demo site."""
    extra_dir = getattr(settings, "POOL_SITES_DIR", "")
    presets = load_presets((Path(extra_dir),) if extra_dir else ())
    if "demo" in presets:
        demo_url = getattr(settings, "POOL_DEMO_URL", "") or DEFAULT_DEMO_URL
        presets["demo"] = presets["demo"].with_base_url(demo_url)
    return presets


def normalise_base_url(text: str) -> str:
    """Return the site's address without a trailing slash; ValueError says what is wrong."""
    text = (text or "").strip()
    if not text:
        raise ValueError("the address is required, e.g. https://acme.coupahost.com")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid address ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"{parts.scheme}:" if parts.scheme else "none"
        raise ValueError(f"{text!r}: the scheme must be http or https (found {shown})")
    if not host:
        raise ValueError(f"{text!r} has no host name")
    if parts.username or parts.password:
        raise ValueError(f"{text!r}: an address may not carry a user name or password")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r}: give the site's address without ?query or #fragment")
    return text.rstrip("/")


def normalise_hosts(hosts: Iterable[str] | str) -> list[str]:
    """Parse extra download hosts (a list, or text split on commas and new lines)."""
    items = re.split(r"[\s,]+", hosts) if isinstance(hosts, str) else list(hosts)
    found: list[str] = []
    for item in items:
        host = str(item).strip().lower().rstrip(".")
        if not host:
            continue
        if "*" in host and not (host.startswith("*.") and "*" not in host[2:]):
            raise ValueError(f"{item!r}: a pattern is *.domain (e.g. *.example.com); "
                             "'*' alone would allow every host")
        if "/" in host or ":" in host:
            raise ValueError(f"{item!r}: give a host name (files.example.com), not an "
                             "address or URL")
        if not HOST_RE.match(host) or len(host) > 253:
            raise ValueError(f"{item!r} is not a host name or *.domain pattern")
        if host not in found:
            found.append(host)
    if len(found) > MAX_EXTRA_HOSTS:
        raise ValueError(f"{len(found)} extra hosts; at most {MAX_EXTRA_HOSTS}")
    return found


def tenant_preset(preset: SitePreset, base_url: str, extra_hosts: Iterable[str]) -> SitePreset:
    """The preset for one tenant; ValueError when the preset refuses the tenant's address."""
    site = preset.for_tenant(base_url, tuple(extra_hosts))
    why = site.check_url(base_url)
    if why:
        raise ValueError(f"preset {preset.name!r} does not accept {base_url!r}: {why}")
    return site
