"""The dashboard's WebSocket takes only the site's own origin (scheme, host and port)
or a trusted one, under production-like settings.

The attack: channels' AllowedHostsOriginValidator compared host names only, so a page
on another port of the same machine (http://127.0.0.1:9999) or the http:// twin of the
site could open the dashboard's socket with the operator's cookie and press buttons.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from poolsite.dashboard.routing import websocket_application
from tests.poolsite.dashboard_personas import operator, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]
SITE = "127.0.0.1:8000"  # the site is served on http://127.0.0.1:8000
PRODUCTION = dict(DEBUG=False, ALLOWED_HOSTS=["127.0.0.1", "localhost"],
                  CSRF_TRUSTED_ORIGINS=[])


@pytest.fixture
def cookie() -> str:
    return session_cookie(operator())


def build(**overrides: Any) -> Any:
    with override_settings(**{**PRODUCTION, **overrides}):
        return websocket_application()


async def connects(application: Any, cookie: str, origin: str | None, host: str = SITE,
                   extra: list[tuple[bytes, bytes]] | None = None) -> bool:
    headers = [(b"host", host.encode()), (b"cookie", f"sessionid={cookie}".encode()),
               *(extra or [])]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(application, "/ws/pool/", headers=headers)
    try:
        connected, _ = await communicator.connect(timeout=10)
        return bool(connected)
    finally:
        await communicator.disconnect()


async def test_only_the_sites_own_origin_is_accepted(cookie: str) -> None:
    application = build()
    for foreign in ("http://127.0.0.1:9999", "https://127.0.0.1", "http://localhost:8080",
                    "http://localhost:8000", "https://127.0.0.1:8000", "http://127.0.0.1",
                    "http://evil.example.com", "null", "", None):
        assert not await connects(application, cookie, foreign), foreign
    assert await connects(application, cookie, "http://127.0.0.1:8000")
    assert await connects(application, cookie, "HTTP://127.0.0.1:8000")  # case-blind


async def test_a_host_off_the_allowed_hosts_is_not_an_origin_of_ours(cookie: str) -> None:
    # DNS rebinding: evil.example.com pointed at our address, Host and Origin agree.
    application = build()
    assert not await connects(application, cookie, "http://evil.example.com:8000",
                              host="evil.example.com:8000")


async def test_trusted_origins_match_scheme_host_and_port(cookie: str) -> None:
    application = build(ALLOWED_HOSTS=["pool.example.com"],
                        CSRF_TRUSTED_ORIGINS=["https://pool.example.com",
                                              "https://*.corp.example.com"])
    assert await connects(application, cookie, "https://pool.example.com")
    assert await connects(application, cookie, "https://pool.example.com:443")
    assert await connects(application, cookie, "https://eu.corp.example.com")
    for foreign in ("http://pool.example.com", "https://pool.example.com:8443",
                    "https://evilcorp.example.com", "http://eu.corp.example.com"):
        assert not await connects(application, cookie, foreign), foreign


async def test_behind_a_tls_proxy_the_forwarded_scheme_counts(cookie: str) -> None:
    application = build(ALLOWED_HOSTS=["pool.example.com"],
                        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
    proto = [(b"x-forwarded-proto", b"https")]
    assert await connects(application, cookie, "https://pool.example.com",
                          host="pool.example.com", extra=proto)
    assert not await connects(application, cookie, "https://pool.example.com",
                              host="pool.example.com")
    assert not await connects(application, cookie, "http://pool.example.com",
                              host="pool.example.com", extra=proto)


async def test_the_deployed_application_checks_the_same_way(cookie: str) -> None:
    from poolsite.asgi import application

    assert not await connects(application, cookie, "http://127.0.0.1:9999")
    assert await connects(application, cookie, "http://127.0.0.1:8000")
