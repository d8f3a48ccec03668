"""The demo site's HTTP listeners: the server class, the simple shape's pages, the canary.

DemoSite (server.py) owns the state (sessions, counters, settings) and starts these;
each handler reaches it as `self.server.site`. The coupa shape's handler
(coupa_server.py) builds on SimpleHandler.
"""

from __future__ import annotations

import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from poolsite.demo_erp import catalog, pages

if TYPE_CHECKING:
    from poolsite.demo_erp.server import DemoSite

SESSION_COOKIE = "demo_session"
DEMO_PASSWORD = "demo-password"
# Hanging pages and stalled downloads wait at most this long (or until stop()).
HANG_SECONDS = 600.0
SESSION_MAX_AGE = 8 * 3600  # seconds; the sign-in cookie's lifetime, as an SSO's would be
CODE_MAX_AGE = 120  # seconds an identity host's sign-in code stays valid
OIDC_CALLBACK = "/sessions/oidc_callback"
COMMENTS_DELAY = 0.6  # seconds the coupa shape's comments API takes, by default


class DemoServer(ThreadingHTTPServer):
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


class QuietHandler(BaseHTTPRequestHandler):
    """A handler of one of the demo's listeners; it logs nothing."""

    server: DemoServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks run thousands of requests; stay quiet


class SimpleHandler(QuietHandler):
    server_version = "DemoERP/1.0"

    @property
    def site(self) -> DemoSite:
        return self.server.site

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


class CanaryHandler(QuietHandler):
    """Counts every request: a host no worker may ever reach."""

    def do_GET(self) -> None:
        self.server.site.count_canary()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "6")
        self.end_headers()
        self.wfile.write(b"canary")
