"""The demo procurement site's HTTP server (threaded; slow pages block only themselves).

    site = DemoSite(latency=0.2).start()
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
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from poolsite.demo_erp import catalog, pages

SESSION_COOKIE = "demo_session"
DEMO_PASSWORD = "demo-password"
# Hanging pages and stalled downloads wait at most this long (or until stop()).
HANG_SECONDS = 600.0
SESSION_MAX_AGE = 8 * 3600  # seconds; the sign-in cookie's lifetime, as an SSO's would be


class DemoSite:
    """A Coupa-like procurement site on 127.0.0.1, with a canary host beside it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0,
                 canary_host: str = "127.0.0.2", require_login: bool = True,
                 secret: bytes | str | None = None) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.canary_host = canary_host
        self.require_login = require_login
        self.down = False  # answer 503 to everything (an outage)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        if isinstance(secret, str):
            secret = secret.encode()
        self._secret = secret or secrets.token_bytes(32)
        self._generation = 0
        self._hits: Counter[str] = Counter()
        self._canary_hits = 0
        self._server: ThreadingHTTPServer | None = None
        self._canary: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> DemoSite:
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._canary = _Server((self.canary_host, 0), _CanaryHandler, self)
        for server in (self._server, self._canary):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name="demo-erp", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()
        for server in (self._server, self._canary):
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

    def count_canary(self) -> None:
        with self._lock:
            self._canary_hits += 1

    @property
    def canary_hits(self) -> int:
        with self._lock:
            return self._canary_hits

    def reset_counters(self) -> None:
        """Forget hits, so rate limits and stall-once behave as on a first visit."""
        with self._lock:
            self._hits.clear()
            self._canary_hits = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, site: DemoSite) -> None:
        self.site = site
        super().__init__(address, handler)


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
        po = catalog.find(digits)
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

    def _requisition(self, requisition_id: str) -> None:
        po = catalog.find(requisition_id[1:]) if requisition_id.startswith("5") else None
        if po is None:
            return self._html(HTTPStatus.NOT_FOUND, pages.not_found())
        self._html(HTTPStatus.OK, pages.requisition(po))

    def _attachment(self, owner: str, index_text: str, hit: int) -> None:
        from_requisition = owner.startswith("r")
        po = catalog.find(owner[1:] if from_requisition else owner)
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
    def _download(self, attachment: catalog.Attachment, stall: bool) -> None:
        fallback = "".join(c if c.isalnum() or c in "._- " else "_" for c in attachment.name)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", attachment.content_type)
        self.send_header("Content-Length", str(attachment.size))
        self.send_header("Content-Disposition", f'attachment; filename="{fallback[:200]}"; '
                         f"filename*=UTF-8''{quote(attachment.name, safe='')}")
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
