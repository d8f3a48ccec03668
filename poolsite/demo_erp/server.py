"""The demo procurement site's HTTP server (threaded; slow pages block only themselves).

    site = DemoSite(latency=0.2).start()          # shape="coupa" (the default) or "simple"
    site.base_url            # http://127.0.0.1:PORT
    site.signin_url("/")     # visiting it signs a browser in
    site.storage_state()     # a Playwright storage state with a live session
    site.expire_sessions()   # sign every browser out (an SSO time-out)
    site.hits("/order_headers/")
    site.stop()

Sessions are HMAC-signed tokens (`<generation>.<nonce>.<mac>`), so with a stable
`secret` they survive a restart of the site; `expire_sessions()` bumps the generation,
which invalidates every token issued before.

A second listener on 127.0.0.2 is the "canary": a host outside every allow-list.
Tests prove that no worker ever reaches it (`canary_hits`).

Three more listeners serve the coupa shape (see `coupa_server`): an analytics CDN on
127.0.0.3 and a monitoring agent on 127.0.0.4, which every coupa page loads scripts and
beacons from (`third_party_hits`; no worker may reach them either), and an identity
host on 127.0.0.5 that signs browsers in for the tenant (OpenID Connect style).

`revoke_after=N` (or `site.revoke_after = N`) signs every browser out once, right
after the N-th PO page served since it was set, as a real SSO session that ends
mid-batch.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlencode

from poolsite.demo_erp import catalog
from poolsite.demo_erp.handlers import (
    CODE_MAX_AGE,
    COMMENTS_DELAY,
    OIDC_CALLBACK,
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    CanaryHandler,
    DemoServer,
    SimpleHandler,
)


class DemoSite:
    """A Coupa-like procurement site on 127.0.0.1, with a canary host beside it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
                 canary_host: str = "127.0.0.2", require_login: bool = True,
                 secret: bytes | str | None = None, shape: str = "coupa",
                 comments_delay: float = COMMENTS_DELAY, revoke_after: int | None = None,
                 analytics_host: str = "127.0.0.3", monitoring_host: str = "127.0.0.4",
                 identity_host: str = "127.0.0.5", tenant_slug: str = "demo") -> None:
        if shape not in catalog.SHAPES:
            raise ValueError(f"unknown shape {shape!r}; expected one of {catalog.SHAPES}")
        self.host = host
        self.port = port
        self.latency = latency
        self.canary_host = canary_host
        self.require_login = require_login
        self.shape = shape
        self.comments_delay = comments_delay  # seconds before the comments app renders
        self.analytics_host = analytics_host
        self.monitoring_host = monitoring_host
        self.identity_host = identity_host
        self.tenant_slug = tenant_slug
        self.down = False  # answer 503 to everything (an outage)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        if isinstance(secret, str):
            secret = secret.encode()
        self._secret = secret or secrets.token_bytes(32)
        self._generation = 0
        self._hits: Counter[str] = Counter()
        self._canary_hits = 0
        self._third_party_hits: Counter[str] = Counter()
        self._identity_hits = 0
        self._used_codes: set[str] = set()
        self._revoke_after: int | None = None
        self._pos_since_revoke_set = 0
        self.revoke_after = revoke_after
        self._server: ThreadingHTTPServer | None = None
        self._canary: ThreadingHTTPServer | None = None
        self._extra: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> DemoSite:
        # Imported here: coupa_server imports this module (its handlers call the site).
        from poolsite.demo_erp import coupa_server

        handler = coupa_server.CoupaHandler if self.shape == "coupa" else SimpleHandler
        self._server = DemoServer((self.host, self.port), handler, self)
        self.port = self._server.server_address[1]
        self._canary = DemoServer((self.canary_host, 0), CanaryHandler, self)
        self._extra = {
            "analytics": DemoServer((self.analytics_host, 0), coupa_server.ThirdPartyHandler, self),
            "monitoring": DemoServer((self.monitoring_host, 0), coupa_server.ThirdPartyHandler,
                                  self),
            "identity": DemoServer((self.identity_host, 0), coupa_server.IdentityHandler, self),
        }
        for server in (self._server, self._canary, *self._extra.values()):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name="demo-erp", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()
        for server in (self._server, self._canary, *self._extra.values()):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def canary_url(self) -> str:
        assert self._canary is not None
        return f"http://{self.canary_host}:{self._canary.server_address[1]}"

    @property
    def analytics_url(self) -> str:
        return self._extra_url("analytics")

    @property
    def monitoring_url(self) -> str:
        return self._extra_url("monitoring")

    @property
    def identity_url(self) -> str:
        return self._extra_url("identity")

    def _extra_url(self, name: str) -> str:
        host, port = self._extra[name].server_address[:2]
        return f"http://{host!s}:{port}"

    def identity_signin_url(self, return_to: str = "/order_headers") -> str:
        """Where the tenant sends a browser without a session (coupa shape)."""
        query = urlencode({"client_id": "coupa", "response_type": "code",
                           "redirect_uri": self.base_url + OIDC_CALLBACK, "state": return_to})
        return (f"{self.identity_url}/realms/{self.tenant_slug}/protocol/openid-connect/auth"
                f"?{query}")

    # -- sessions ------------------------------------------------------------------
    def new_session(self) -> str:
        with self._lock:
            body = f"{self._generation}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac(body)}"

    def is_session(self, token: str | None) -> bool:
        generation, _, rest = (token or "").partition(".")
        nonce, _, mac = rest.partition(".")
        if not (generation.isdigit() and nonce and mac):
            return False
        with self._lock:
            current = self._generation
        return int(generation) == current and hmac.compare_digest(
            mac, self._mac(f"{generation}.{nonce}"))

    def expire_sessions(self) -> None:
        """Sign every browser out, as an SSO session timing out would."""
        with self._lock:
            self._generation += 1

    def issue_code(self) -> str:
        """A short-lived one-time sign-in code, as the identity host hands the tenant."""
        body = f"code.{int(time.time())}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._mac(body)}"

    def redeem_code(self, code: str) -> bool:
        """True once for a genuine, fresh code; False for forged, stale or reused ones."""
        body, _, mac = code.rpartition(".")
        kind, _, rest = body.partition(".")
        issued, _, _nonce = rest.partition(".")
        if kind != "code" or not issued.isdigit() or not hmac.compare_digest(
                mac, self._mac(body)):
            return False
        if time.time() - int(issued) > CODE_MAX_AGE:
            return False
        with self._lock:
            if body in self._used_codes:
                return False
            self._used_codes.add(body)
        return True

    @property
    def revoke_after(self) -> int | None:
        return self._revoke_after

    @revoke_after.setter
    def revoke_after(self, count: int | None) -> None:
        """Sign everyone out once, after `count` more PO pages are served (None: never)."""
        with self._lock:
            self._revoke_after = count
            self._pos_since_revoke_set = 0

    def po_page_served(self) -> None:
        """Count a PO page served (200); revoke every session when the count is reached."""
        with self._lock:
            if self._revoke_after is None:
                return
            self._pos_since_revoke_set += 1
            if self._pos_since_revoke_set < self._revoke_after:
                return
            self._revoke_after = None
            self._generation += 1

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]

    def signin_url(self, return_to: str = "/order_headers") -> str:
        return f"{self.base_url}/sessions/auto?return_to={quote(return_to)}"

    def storage_state(self) -> dict[str, Any]:
        """A Playwright storage_state dict holding a fresh signed-in session."""
        cookie = {"name": SESSION_COOKIE, "value": self.new_session(), "domain": self.host,
                  "path": "/", "expires": int(time.time()) + SESSION_MAX_AGE,
                  "httpOnly": True, "secure": False,
                  "sameSite": "Lax"}
        return {"cookies": [cookie], "origins": []}

    # -- counters ------------------------------------------------------------------
    def count(self, path: str) -> int:
        """Record a hit on `path`; return how many hits it has had, this one included."""
        with self._lock:
            self._hits[path] += 1
            return self._hits[path]

    def hits(self, prefix: str = "/") -> int:
        with self._lock:
            return sum(n for path, n in self._hits.items() if path.startswith(prefix))

    def visits(self, path: str) -> int:
        """Hits on exactly `path` (a PO page, not its comments API below it)."""
        with self._lock:
            return self._hits[path]

    def count_canary(self) -> None:
        with self._lock:
            self._canary_hits += 1

    @property
    def canary_hits(self) -> int:
        with self._lock:
            return self._canary_hits

    def count_third_party(self, host: str) -> None:
        with self._lock:
            self._third_party_hits[host] += 1

    def count_identity(self) -> None:
        with self._lock:
            self._identity_hits += 1

    @property
    def identity_hits(self) -> int:
        """Requests the identity host received (sign-in pages, form posts)."""
        with self._lock:
            return self._identity_hits

    @property
    def third_party_hits(self) -> int:
        """Hits on the analytics and monitoring hosts together."""
        with self._lock:
            return sum(self._third_party_hits.values())

    def reset_counters(self) -> None:
        """Forget hits, so rate limits and stall-once behave as on a first visit."""
        with self._lock:
            self._hits.clear()
            self._canary_hits = 0
            self._third_party_hits.clear()
            self._identity_hits = 0


__all__ = ["COMMENTS_DELAY", "SESSION_COOKIE", "DemoSite"]
