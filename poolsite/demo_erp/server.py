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
import sys
import threading
import time
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from poolsite.demo_erp import catalog, pages

SESSION_COOKIE = "demo_session"
DEMO_PASSWORD = "demo-password"
# Hanging pages and stalled downloads wait at most this long (or until stop()).
HANG_SECONDS = 600.0
SESSION_MAX_AGE = 8 * 3600  # seconds; the sign-in cookie's lifetime, as an SSO's would be
CODE_MAX_AGE = 120  # seconds an identity host's sign-in code stays valid
OIDC_CALLBACK = "/sessions/oidc_callback"
COMMENTS_DELAY = 0.6  # seconds the coupa shape's comments API takes, by default


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
        # Imported here: coupa_server builds on this module's handler.
        from poolsite.demo_erp import coupa_server

        handler = coupa_server.CoupaHandler if self.shape == "coupa" else _Handler
        self._server = _Server((self.host, self.port), handler, self)
        self.port = self._server.server_address[1]
        self._canary = _Server((self.canary_host, 0), _CanaryHandler, self)
        self._extra = {
            "analytics": _Server((self.analytics_host, 0), coupa_server.ThirdPartyHandler, self),
            "monitoring": _Server((self.monitoring_host, 0), coupa_server.ThirdPartyHandler,
                                  self),
            "identity": _Server((self.identity_host, 0), coupa_server.IdentityHandler, self),
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, site: DemoSite) -> None:
        self.site = site
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that hangs up mid-response (a test ends, a worker is killed while the
        # comments are still delayed) is ordinary here, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "DemoERP/1.0"

    @property
    def site(self) -> DemoSite:
        return self.server.site

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks run thousands of requests; stay quiet

    # -- routing -------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        hit = self.site.count(url.path)
        if self.site.down:
            return self._html(HTTPStatus.SERVICE_UNAVAILABLE, pages.server_error())
        parts = [p for p in url.path.split("/") if p]
        if url.path == "/healthz":
            return self._html(HTTPStatus.OK, "ok")
        if parts[:2] == ["sessions", "new"]:
            return self._html(HTTPStatus.OK, pages.login(query.get("return_to", "/")))
        if parts[:2] == ["sessions", "auto"]:
            return self._sign_in(query.get("return_to", "/order_headers"))
        if parts[:2] == ["sessions", "destroy"]:
            return self._redirect("/sessions/new", cookie=f"{SESSION_COOKIE}=; Max-Age=0; Path=/")
        if not self._signed_in():
            return self._redirect(f"/sessions/new?return_to={quote(self.path)}")
        self._wait_latency(query)
        if parts in (["order_headers"], ["requisition_headers"], []):
            return self._html(HTTPStatus.OK, pages.orders_index())
        if len(parts) == 2 and parts[0] == "order_headers":
            return self._purchase_order(parts[1], hit)
        if len(parts) == 2 and parts[0] == "requisition_headers":
            return self._requisition(parts[1])
        if len(parts) == 3 and parts[0] == "attachments":
            return self._attachment(parts[1], parts[2], hit)
        return self._html(HTTPStatus.NOT_FOUND, pages.not_found())

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        self.site.count(url.path)
        length = min(int(self.headers.get("Content-Length") or 0), 64_000)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if url.path == "/sessions":
            return_to = form.get("return_to", "/order_headers")
            if form.get("user[email]") and form.get("user[password]") == DEMO_PASSWORD:
                return self._sign_in(return_to)
            return self._html(HTTPStatus.OK, pages.login(return_to, "Invalid email or password."))
        if url.path == "/_demo/expire_sessions":
            self.site.expire_sessions()
            return self._html(HTTPStatus.OK, "expired")
        return self._html(HTTPStatus.NOT_FOUND, pages.not_found())

    # -- pages -----------------------------------------------------------------------
    def _purchase_order(self, digits: str, hit: int) -> None:
        po = catalog.find(digits, shape="simple")
        number = po.po_number if po else ""
        if po is None or number == catalog.NOT_FOUND:
            return self._html(HTTPStatus.NOT_FOUND, pages.not_found())
        if number == catalog.ACCESS_DENIED:
            return self._html(HTTPStatus.FORBIDDEN, pages.access_denied())
        if number == catalog.RATE_LIMITED and hit <= catalog.RATE_LIMIT_HITS:
            return self._html(HTTPStatus.TOO_MANY_REQUESTS, pages.rate_limited(),
                              headers={"Retry-After": str(catalog.RETRY_AFTER_SECONDS)})
        if number == catalog.SERVER_ERROR:
            return self._html(HTTPStatus.INTERNAL_SERVER_ERROR, pages.server_error())
        if number == catalog.HANG:
            self.site.stopping.wait(HANG_SECONDS)
            return None
        if number == catalog.REDIRECT_OUT:
            return self._redirect(f"{self.site.canary_url}/redirected/{digits}")
        canary = self.site.canary_url if number == catalog.SUBREQUEST_OUT else ""
        self._html(HTTPStatus.OK, pages.purchase_order(
            po, canary_url=canary, memory_hog=number == catalog.MEMORY_HOG))
        self.site.po_page_served()

    def _requisition(self, requisition_id: str) -> None:
        po = (catalog.find(requisition_id[1:], shape="simple")
              if requisition_id.startswith("5") else None)
        if po is None:
            return self._html(HTTPStatus.NOT_FOUND, pages.not_found())
        self._html(HTTPStatus.OK, pages.requisition(po))

    def _attachment(self, owner: str, index_text: str, hit: int) -> None:
        from_requisition = owner.startswith("r")
        po = catalog.find(owner[1:] if from_requisition else owner, shape="simple")
        files = () if po is None else (
            po.requisition_attachments if from_requisition else po.po_attachments)
        index = int(index_text) if index_text.isdigit() else -1
        if not 0 <= index < len(files):
            return self._html(HTTPStatus.NOT_FOUND, pages.not_found())
        assert po is not None
        stall = (po.po_number == catalog.STALLED_DOWNLOAD and index == 1) or (
            po.po_number == catalog.STALL_ONCE and hit == 1)
        self._download(files[index], stall=stall)

    # -- responses -------------------------------------------------------------------
    def _download(self, attachment: catalog.Attachment, stall: bool, filename: str = "",
                  inline: bool = False) -> None:
        """Send a file as an attachment (or inline) under `filename` (default: its name)."""
        name = filename or attachment.name
        fallback = "".join(c if c.isascii() and (c.isalnum() or c in "._- ") else "_"
                           for c in name)
        if inline:
            disposition = f'inline; filename="{fallback[:200]}"'
        else:
            disposition = (f'attachment; filename="{fallback[:200]}"; '
                           f"filename*=UTF-8''{quote(name, safe='')}")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", attachment.content_type)
        self.send_header("Content-Length", str(attachment.size))
        self.send_header("Content-Disposition", disposition)
        self.end_headers()
        if stall:
            # Send a little, then nothing: the download never completes.
            self.wfile.write(attachment.body[:64])
            self.wfile.flush()
            self.site.stopping.wait(HANG_SECONDS)
            return
        self.wfile.write(attachment.body)

    def _sign_in(self, return_to: str) -> None:
        token = self.site.new_session()
        target = return_to if return_to.startswith("/") and not return_to.startswith("//") else "/"
        self._redirect(target, cookie=f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; "
                       f"SameSite=Lax; Max-Age={SESSION_MAX_AGE}")

    def _signed_in(self) -> bool:
        if not self.site.require_login:
            return True
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and self.site.is_session(value):
                return True
        return False

    def _wait_latency(self, query: dict[str, str]) -> None:
        try:
            delay = float(query.get("latency", self.site.latency))
        except ValueError:
            delay = self.site.latency
        if delay > 0:
            time.sleep(min(delay, 30.0))

    def _redirect(self, location: str, cookie: str = "") -> None:
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", location)
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _html(self, status: HTTPStatus, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _CanaryHandler(BaseHTTPRequestHandler):
    """Counts every request: a host no worker may ever reach."""

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.site.count_canary()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"canary")
