"""WebSocket routes, behind a same-origin check and session authentication.

CSRF does not cover WebSockets, and a browser sends the session cookie with a socket
any page opens, so the Origin header is what tells our own page from another site's.
channels' AllowedHostsOriginValidator compares only the host name against
ALLOWED_HOSTS: a page on http://127.0.0.1:9999 (any other port on the same machine),
or the http:// twin of an https:// site, passed it. Here an origin is accepted when
scheme, host and port all equal the site's own origin (the request's Host, which must
be allowed, with the connection's scheme) or one of DJANGO_CSRF_TRUSTED_ORIGINS.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.urls import path

from poolsite.dashboard.consumers import PoolConsumer

log = logging.getLogger(__name__)
DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host, port

websocket_urlpatterns = [
    path("ws/pool/", PoolConsumer.as_asgi()),
]


def parse_origin(text: str) -> Origin | None:
    """(scheme, host, port) of an origin such as "https://pool.example.com", or None."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


class SameOriginValidator:
    """Let a WebSocket through only from the site's own origin or a trusted one.

    Settings are read when it is built, as channels' own validator does.
    """

    def __init__(self, application: Any) -> None:
        self.application = application
        hosts = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not hosts:  # what Django's HTTP side allows then
            hosts = [".localhost", "127.0.0.1", "[::1]"]
        self.allowed_hosts = hosts
        self.trusted: list[tuple[str, str, int, bool]] = []  # scheme, host, port, wildcard
        for origin in settings.CSRF_TRUSTED_ORIGINS:
            wildcard = "://*." in origin
            parsed = parse_origin(origin.replace("://*.", "://", 1))
            if parsed is not None:
                self.trusted.append((*parsed, wildcard))
        proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        self.proxy_header: tuple[bytes, bytes] | None = None
        if proxy:
            name, value = proxy
            header = name.removeprefix("HTTP_").lower().replace("_", "-")
            self.proxy_header = (header.encode("latin-1"), value.encode("latin-1"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            origin = _header(scope, b"origin")
            if not self.allows(scope, origin):
                log.warning("WebSocket refused: origin %.100r is not this site's (host %.100r)",
                            origin, _header(scope, b"host"))
                return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

    def allows(self, scope: dict[str, Any], origin_header: str | None) -> bool:
        origin = parse_origin(origin_header or "")
        if origin is None:
            return False
        own = self.own_origin(scope)
        if own is not None and origin == own:
            return True
        scheme, host, port = origin
        for t_scheme, t_host, t_port, wildcard in self.trusted:
            if (scheme, port) == (t_scheme, t_port) and (
                    host == t_host or (wildcard and host.endswith("." + t_host))):
                return True
        return False

    def own_origin(self, scope: dict[str, Any]) -> Origin | None:
        """The site's origin as this connection reached it: Host and scheme."""
        host = _header(scope, b"host") or ""
        domain, port = split_domain_port(host)
        if not domain or not validate_host(domain, self.allowed_hosts):
            return None
        secure = scope.get("scheme") in ("wss", "https")
        if self.proxy_header is not None:
            name, value = self.proxy_header
            secure = secure or _header(scope, name) == value.decode("latin-1")
        scheme = "https" if secure else "http"
        try:
            number = int(port) if port else DEFAULT_PORTS[scheme]
        except ValueError:
            return None
        return scheme, domain.strip("[]"), number


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def websocket_application() -> Any:
    """Origin check (settings read now), then session auth, then routes."""
    return SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
