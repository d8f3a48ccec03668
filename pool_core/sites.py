"""Site presets: everything that differs between procurement sites, as data.

A preset is a JSON file. The built-in ones live in `pool_core/presets/`; an operator
adds a site by dropping another JSON file into a folder passed as `extra_dirs`
(poolsite passes POOL_SITES_DIR), no code change. The URL allow-list lives here too,
so upload validation and the browser's request filter apply one rule.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import socket
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from pool_core.errors import UnsafeURLError

BUILTIN_DIR = Path(__file__).with_name("presets")
ALLOWED_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class ErrorMarker:
    """Text or selectors that mean "this page is an error page" with a given status.

    `texts` are looked for inside the elements `scope` selects (the whole body when
    empty): on Coupa the error sits in the flash box, and a comment on a good PO that
    says "access denied" must not make the PO an error page.
    """

    status: str  # "PO_NOT_FOUND" | "ACCESS_DENIED"
    texts: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()
    scope: str = ""


FETCH_MODES = ("auto", "href", "click")
PAGE_KINDS = ("po", "requisition")


@dataclass(frozen=True)
class AttachmentSource:
    """One place of a page that holds files, and how to read it.

    A source is *seen* when its `container` is on the page within `render_timeout_s`
    (comments apps render after `load`); its files are the `items` inside it. A source
    that was seen and holds no item is the evidence for "no attachments here"; a
    source that never appeared means the page is not the shape we know (LAYOUT_UNKNOWN),
    unless it is not `required`. `empty` optionally names the marker a site shows for
    "none" (Coupa's `li.none`): when set, a seen container with neither items nor that
    marker is also not understood.
    """

    name: str
    container: str
    items: str
    fetch: str = "auto"  # "href": download the link; "click": click it; "auto": href if any
    render_timeout_s: float = 5.0
    pages: tuple[str, ...] = PAGE_KINDS
    required: bool = True
    empty: str = ""


@dataclass(frozen=True)
class SitePreset:
    """How to find, classify and harvest PO pages on one procurement site."""

    name: str
    base_url: str = ""
    url_template: str = "{base}/order_headers/{digits}"
    probe_url: str = ""  # a page that shows the login wall when the session is invalid
    login_url_patterns: tuple[str, ...] = ()
    login_selectors: tuple[str, ...] = ()
    signed_in_selectors: tuple[str, ...] = ()  # the probe page shows one when signed in
    error_markers: tuple[ErrorMarker, ...] = ()
    attachment_sources: tuple[AttachmentSource, ...] = ()
    attachment_selectors: tuple[str, ...] = ()  # shorthand: one source, the whole page
    overlay_selectors: tuple[str, ...] = ()  # hidden before clicking (floating bars)
    requisition_selector: str = ""
    requisition_when_no_pdf: bool = False  # also look there when the PO has no PDF
    supplier_selectors: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # hostnames, "*.example.com", or "*" for any public
    allow_private: bool = False  # loopback/private/link-local targets (the demo only)
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def sources_for(self, kind: str) -> tuple[AttachmentSource, ...]:
        """The attachment sources of a page of `kind` ("po" or "requisition")."""
        if self.attachment_sources:
            return tuple(s for s in self.attachment_sources if kind in s.pages)
        if self.attachment_selectors:  # any page: the body is always there
            return (AttachmentSource(name="page", container="body",
                                     items=", ".join(self.attachment_selectors),
                                     render_timeout_s=0.0),)
        return ()

    def with_base_url(self, base_url: str) -> SitePreset:
        """Return a copy pointing at another deployment (the demo's port, a tenant)."""
        return replace(self, base_url=base_url.rstrip("/"))

    def for_tenant(self, base_url: str = "", extra_hosts: tuple[str, ...] = ()) -> SitePreset:
        """Return a copy for one tenant: its address, and hosts its downloads come from.

        The tenant's own host joins the allow-list (a company domain need not match
        the preset's patterns); `extra_hosts` are names or `*.example.com` patterns.
        """
        site = self.with_base_url(base_url) if base_url else self
        hosts = list(site.allowed_hosts)
        own = (urlsplit(site.base_url).hostname or "").lower() if site.base_url else ""
        for host in (own, *extra_hosts):
            host = host.strip().lower()
            if host and host not in hosts:
                hosts.append(host)
        return replace(site, allowed_hosts=tuple(hosts))

    def build_url(self, po_number: str) -> str:
        """Build a PO's page URL from the template (used when a row has no url)."""
        if not self.base_url:
            raise ValueError(f"site {self.name!r} has no base_url to build PO URLs from")
        return self.url_template.format(base=self.base_url, digits=po_digits(po_number),
                                        po_number=po_number)

    def check_url(self, url: str) -> str | None:
        """Return why `url` may not be opened for this site, or None when it may."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError as exc:
            return f"malformed URL ({exc})"
        if parts.scheme.lower() not in ALLOWED_SCHEMES:
            return f"scheme {parts.scheme + ':' if parts.scheme else '(none)'} is not allowed"
        if not host:
            return "URL has no host"
        if is_private_host(host) and not self.allow_private:
            return f"host {host} is a loopback, private or link-local address"
        if not self.host_allowed(host):
            return f"host {host} is not in the allow-list of site {self.name!r}"
        return None

    def check_resolved(self, url: str) -> str | None:
        """`check_url`, then: every address the URL's host name resolves to must be public.

        A name that resolves to this machine or a private network (a DNS entry pointing
        at 127.0.0.1, or at a cloud metadata address) is refused unless the site allows
        private targets. A name that does not resolve is left to the browser to fail.
        """
        problem = self.check_url(url)
        if problem or self.allow_private:
            return problem
        host = (urlsplit(url).hostname or "").lower()
        for address in resolve(host):
            if is_private_host(address):
                return f"host {host} resolves to {address}, a loopback or private address"
        return None

    def connect_addresses(self, host: str) -> tuple[str, ...]:
        """The addresses a browser connection to `host` may go to; UnsafeURLError if none.

        The worker's egress proxy (egress_proxy.py) asks this for every connection and
        connects to one of the addresses returned, never to a later DNS answer: the
        connection is pinned to what was checked. `host` must be on the allow-list, and
        every address it resolves to must be public unless the site allows private
        targets.
        """
        host = host.strip("[]").lower().rstrip(".")
        if not host:
            raise UnsafeURLError("no host")
        if not self.host_allowed(host):
            raise UnsafeURLError(f"host {host} is not in the allow-list of site {self.name!r}")
        literal = _ip_literal(host)
        if literal is not None:
            addresses: tuple[str, ...] = (str(literal),)
        else:
            addresses = resolve(host)
        if not addresses:
            raise UnsafeURLError(f"host {host} does not resolve")
        if not self.allow_private:
            for address in addresses:
                if is_private_host(address):
                    raise UnsafeURLError(f"host {host} resolves to {address}, "
                                         "a loopback or private address")
        return addresses

    def require_url(self, url: str) -> str:
        """Return `url` when it may be opened; raise UnsafeURLError saying why not."""
        problem = self.check_url(url)
        if problem:
            raise UnsafeURLError(f"refused URL {url[:200]!r}: {problem}")
        return url

    def po_url(self, po_number: str, url: str = "") -> str:
        """The page of a PO: its own `url`, or one built from the template; validated."""
        return self.require_url(url.strip() or self.build_url(po_number))

    def is_sign_in_url(self, url: str) -> bool:
        """Whether `url` is one of the site's sign-in pages (`login_url_patterns`)."""
        return any(fnmatch.fnmatchcase(url, pattern) for pattern in self.login_url_patterns)

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for pattern in self.allowed_hosts:
            if pattern == "*":
                return not is_private_host(host) or self.allow_private
            if fnmatch.fnmatchcase(host, pattern.lower()):
                return True
        return False


RESOLVE_TTL_S = 60.0
_resolved: dict[str, tuple[float, tuple[str, ...]]] = {}


def resolve(host: str) -> tuple[str, ...]:
    """The addresses `host` resolves to (cached for a minute); () for an IP literal."""
    if not host or _ip_literal(host.strip("[]")) is not None:
        return ()
    now = time.monotonic()
    cached = _resolved.get(host)
    if cached is not None and now - cached[0] < RESOLVE_TTL_S:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        infos = []
    addresses = tuple(sorted({str(info[4][0]) for info in infos}))
    _resolved[host] = (now, addresses)
    return addresses


def po_digits(po_number: str) -> str:
    """Strip only a leading PO/PM prefix: 'PO15262984' -> '15262984'."""
    text = po_number.strip()
    if text[:2].upper() in ("PO", "PM"):
        return text[2:]
    return text


def is_private_host(host: str) -> bool:
    """Whether a hostname or IP literal names this machine or a private network."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip_literal(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_private or address.is_link_local
            or address.is_reserved or address.is_multicast or address.is_unspecified)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an IP literal, including the legacy IPv4 forms browsers accept.

    Chromium reads `127.1`, `0x7f000001` and `2130706433` as 127.0.0.1; so does
    inet_aton, while ipaddress does not.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not all(part and (part.isdigit() or part.lower().startswith("0x"))
               for part in host.split(".")):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def preset_from_dict(data: dict) -> SitePreset:
    """Build a preset from parsed JSON, refusing unknown keys so typos are loud."""
    known = {f.name for f in fields(SitePreset)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown preset keys: {', '.join(sorted(unknown))}")
    if not data.get("name"):
        raise ValueError("preset has no name")
    values = dict(data)
    for key in ("login_url_patterns", "login_selectors", "attachment_selectors",
                "supplier_selectors", "allowed_hosts", "overlay_selectors",
                "signed_in_selectors"):
        values[key] = tuple(values.get(key, ()))
    values["error_markers"] = tuple(
        ErrorMarker(status=m["status"], texts=tuple(m.get("texts", ())),
                    selectors=tuple(m.get("selectors", ())), scope=m.get("scope", ""))
        for m in values.get("error_markers", ())
    )
    values["attachment_sources"] = tuple(
        _source_from_dict(item) for item in values.get("attachment_sources", ()))
    return SitePreset(**values)


def _source_from_dict(data: dict) -> AttachmentSource:
    known = {f.name for f in fields(AttachmentSource)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown attachment source keys: {', '.join(sorted(unknown))}")
    for key in ("name", "container", "items"):
        if not data.get(key):
            raise ValueError(f"attachment source {data.get('name', '?')!r} has no {key}")
    values = dict(data)
    if values.get("fetch", "auto") not in FETCH_MODES:
        raise ValueError(f"attachment source {data['name']!r}: fetch must be one of "
                         f"{', '.join(FETCH_MODES)}, not {values['fetch']!r}")
    values["pages"] = tuple(values.get("pages", PAGE_KINDS))
    if not values["pages"] or set(values["pages"]) - set(PAGE_KINDS):
        raise ValueError(f"attachment source {data['name']!r}: pages must be among "
                         f"{', '.join(PAGE_KINDS)}")
    values["render_timeout_s"] = float(values.get("render_timeout_s", 5.0))
    return AttachmentSource(**values)


def load_preset(name: str, extra_dirs: tuple[Path, ...] = ()) -> SitePreset:
    """Return the preset called `name`; KeyError lists the known ones."""
    presets = load_presets(extra_dirs)
    if name not in presets:
        raise KeyError(f"no site preset {name!r} (known: {', '.join(sorted(presets))})")
    return presets[name]


def load_presets(extra_dirs: tuple[Path, ...] = ()) -> dict[str, SitePreset]:
    """Load the built-in presets and those in `extra_dirs` (later ones override)."""
    presets: dict[str, SitePreset] = {}
    for folder in (BUILTIN_DIR, *extra_dirs):
        for path in sorted(Path(folder).glob("*.json")):
            try:
                preset = preset_from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"site preset {path}: {exc}") from exc
            presets[preset.name] = preset
    return presets
