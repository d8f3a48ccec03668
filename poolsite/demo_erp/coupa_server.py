"""The coupa shape's handlers: the tenant, its third-party hosts and its identity host.

Tenant routes (a session cookie is needed for all but assets, logos and sign-in):

    /order_headers/<digits>                  PO page (see coupa_pages)
    /order_headers/<digits>/comments.json    what the page's comments app renders
    /requisition_headers/<id>[/comments.json]
    /attachment/attachment_file/file/<id>/<name>   a file (PDFs from comments: inline)
    /assets/<name>, /public_attachments/<key>      scripts, stylesheet, logo (public)
    /sessions/auto?return_to=, /sessions/oidc_callback?code=&state=, /sessions/destroy

Without a session the tenant redirects to the identity host, whose form accepts any
user name with the demo password and redirects back with a signed one-time code.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from urllib.parse import parse_qs, urlencode, urlsplit

from poolsite.demo_erp import catalog, coupa_assets, coupa_pages, filetypes, pages
from poolsite.demo_erp.handlers import (
    DEMO_PASSWORD,
    HANG_SECONDS,
    OIDC_CALLBACK,
    SESSION_COOKIE,
    QuietHandler,
    SimpleHandler,
)

LOGO_PNG = filetypes.make_png(48, 24, (11, 59, 96))
MAX_COMMENTS_DELAY = 30.0  # seconds; a bound on ?comments_delay=


class CoupaHandler(SimpleHandler):
    """The tenant in the coupa shape."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        hit = self.site.count(url.path)
        if self.site.down:
            return self._html(HTTPStatus.SERVICE_UNAVAILABLE, pages.server_error())
        parts = [p for p in url.path.split("/") if p]
        if url.path == "/healthz":
            return self._html(HTTPStatus.OK, "ok")
        if parts[:1] == ["assets"] and len(parts) == 2:
            return self._asset(parts[1])
        if parts[:1] == ["public_attachments"]:
            return self._bytes(HTTPStatus.OK, "image/png", LOGO_PNG)
        if parts[:2] == ["sessions", "auto"]:
            return self._sign_in(query.get("return_to", "/order_headers"))
        if url.path == OIDC_CALLBACK:
            return self._oidc_callback(query)
        if parts[:2] == ["sessions", "new"]:
            return self._redirect(self.site.identity_signin_url(query.get("return_to", "/")))
        if parts[:2] == ["sessions", "destroy"]:
            return self._redirect(self.site.identity_signin_url("/order_headers"),
                                  cookie=f"{SESSION_COOKIE}=; Max-Age=0; Path=/")
        if not self._signed_in():
            return self._redirect(self.site.identity_signin_url(self.path))
        self._wait_latency(query)
        return self._signed_in_get(parts, query, hit)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        self.site.count(url.path)
        length = min(int(self.headers.get("Content-Length") or 0), 64_000)
        self.rfile.read(length)
        if url.path == "/_demo/expire_sessions":
            self.site.expire_sessions()
            return self._html(HTTPStatus.OK, "expired")
        return self._error(HTTPStatus.NOT_FOUND, coupa_pages.NOT_FOUND_TEXT)

    # -- signed-in routes --------------------------------------------------------------
    def _signed_in_get(self, parts: list[str], query: dict[str, str], hit: int) -> None:
        if parts in (["order_headers"], ["requisition_headers"], []):
            return self._html(HTTPStatus.OK, coupa_pages.orders_index(self._hosts()))
        if len(parts) == 2 and parts[0] == "order_headers":
            return self._purchase_order(parts[1], hit)
        if len(parts) == 3 and parts[0] == "order_headers" and parts[2] == "comments.json":
            po = catalog.find(parts[1], shape="coupa")
            return self._comments(po, query, on_requisition=False)
        if len(parts) == 2 and parts[0] == "requisition_headers":
            return self._requisition(parts[1])
        if len(parts) == 3 and parts[0] == "requisition_headers" and parts[2] == "comments.json":
            po = catalog.po_of_requisition(parts[1])
            return self._comments(po, query, on_requisition=True)
        if len(parts) == 5 and parts[:3] == ["attachment", "attachment_file", "file"]:
            return self._file(parts[3], hit)
        return self._error(HTTPStatus.NOT_FOUND, coupa_pages.NOT_FOUND_TEXT)

    def _purchase_order(self, digits: str, hit: int) -> None:
        po = catalog.find(digits, shape="coupa")
        number = po.po_number if po else ""
        if po is None or number == catalog.NOT_FOUND:
            return self._error(HTTPStatus.NOT_FOUND, coupa_pages.NOT_FOUND_TEXT)
        if number == catalog.ACCESS_DENIED:
            return self._error(HTTPStatus.FORBIDDEN, coupa_pages.ACCESS_DENIED_TEXT)
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
        hosts = self._hosts(canary=number == catalog.SUBREQUEST_OUT)
        self._html(HTTPStatus.OK, coupa_pages.purchase_order(
            po, hosts, memory_hog=number == catalog.MEMORY_HOG))
        self.site.po_page_served()

    def _requisition(self, requisition_id: str) -> None:
        po = catalog.po_of_requisition(requisition_id)
        if po is None or po.po_number in (catalog.NOT_FOUND, catalog.ACCESS_DENIED):
            return self._error(HTTPStatus.NOT_FOUND, coupa_pages.NOT_FOUND_TEXT)
        self._html(HTTPStatus.OK, coupa_pages.requisition(po, self._hosts()))

    def _comments(self, po: catalog.DemoPO | None, query: dict[str, str],
                  on_requisition: bool) -> None:
        if po is None:
            return self._json(HTTPStatus.NOT_FOUND, '{"error": "not found"}')
        if po.po_number == catalog.COMMENTS_NEVER_RENDER and not on_requisition:
            return self._json(HTTPStatus.INTERNAL_SERVER_ERROR, '{"error": "internal"}')
        # The comments API is slow on the real site: the section appears well after load.
        time.sleep(self._comments_delay(query))
        self._json(HTTPStatus.OK,
                   coupa_pages.comments_json(po, self.site.base_url, on_requisition))

    def _file(self, file_id: str, hit: int) -> None:
        found = catalog.coupa_file(file_id)
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, coupa_pages.NOT_FOUND_TEXT)
        po, file = found
        stall = (po.po_number == catalog.STALLED_DOWNLOAD and file.index == 1) or (
            po.po_number == catalog.STALL_ONCE and hit == 1)
        self._download(file.attachment, stall=stall, filename=file.site_name,
                       inline=file.inline)

    def _oidc_callback(self, query: dict[str, str]) -> None:
        if not self.site.redeem_code(query.get("code", "")):
            return self._error(HTTPStatus.FORBIDDEN, "Sign-in failed: invalid or expired code.")
        self._sign_in(query.get("state", "/order_headers"))

    # -- helpers -------------------------------------------------------------------------
    def _hosts(self, canary: bool = False) -> coupa_pages.Hosts:
        return coupa_pages.Hosts(
            tenant=self.site.base_url, analytics=self.site.analytics_url,
            monitoring=self.site.monitoring_url,
            canary=self.site.canary_url if canary else "")

    def _comments_delay(self, query: dict[str, str]) -> float:
        try:
            delay = float(query.get("comments_delay", self.site.comments_delay))
        except ValueError:
            delay = self.site.comments_delay
        return min(max(delay, 0.0), MAX_COMMENTS_DELAY)

    def _asset(self, name: str) -> None:
        found = coupa_assets.TENANT_ASSETS.get(name)
        if found is None:
            return self._bytes(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
        content_type, text = found
        self._bytes(HTTPStatus.OK, f"{content_type}; charset=utf-8", text.encode())

    def _error(self, status: HTTPStatus, flash: str) -> None:
        self._html(status, coupa_pages.error("order_headers", flash, self._hosts()))

    def _json(self, status: HTTPStatus, body: str) -> None:
        self._bytes(status, "application/json; charset=utf-8", body.encode())

    def _bytes(self, status: HTTPStatus, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ThirdPartyHandler(QuietHandler):
    """An analytics CDN or monitoring agent: answers scripts, counts every request."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 64_000)
        self.rfile.read(length)
        self._answer()

    def do_OPTIONS(self) -> None:
        self._answer()

    def _answer(self) -> None:
        host = str(self.server.server_address[0])
        self.server.site.count_third_party(host)
        is_analytics = host == self.server.site.analytics_host
        body = (coupa_assets.ANALYTICS_JS if is_analytics else coupa_assets.MONITORING_JS).encode()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/javascript")
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class IdentityHandler(QuietHandler):
    """The identity host: a sign-in form that sends the browser back with a code."""

    def do_GET(self) -> None:
        self.server.site.count_identity()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path != self._realm_path("/protocol/openid-connect/auth"):
            return self._page(HTTPStatus.NOT_FOUND, "<h1>Page not found</h1>")
        if not self._valid_client(query):
            return self._page(HTTPStatus.BAD_REQUEST, "<h1>Invalid parameter: redirect_uri</h1>")
        self._page(HTTPStatus.OK, coupa_pages.identity_login(
            self.server.site.tenant_slug, self._fields(query)))

    def do_POST(self) -> None:
        self.server.site.count_identity()
        url = urlsplit(self.path)
        length = min(int(self.headers.get("Content-Length") or 0), 64_000)
        form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if url.path != self._realm_path("/login-actions/authenticate"):
            return self._page(HTTPStatus.NOT_FOUND, "<h1>Page not found</h1>")
        if not self._valid_client(form):
            return self._page(HTTPStatus.BAD_REQUEST, "<h1>Invalid parameter: redirect_uri</h1>")
        if not (form.get("username") and form.get("password") == DEMO_PASSWORD):
            return self._page(HTTPStatus.OK, coupa_pages.identity_login(
                self.server.site.tenant_slug, self._fields(form),
                "Invalid username or password."))
        query = urlencode({"code": self.server.site.issue_code(), "state": form.get("state", "/")})
        self.send_response(HTTPStatus.FOUND)
        self.send_header("Location", f"{form['redirect_uri']}?{query}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _realm_path(self, tail: str) -> str:
        return f"/realms/{self.server.site.tenant_slug}{tail}"

    def _valid_client(self, params: dict[str, str]) -> bool:
        """Only the tenant's own callback: the identity host is no open redirector."""
        return (params.get("client_id") == "coupa"
                and params.get("redirect_uri") == self.server.site.base_url + OIDC_CALLBACK)

    @staticmethod
    def _fields(params: dict[str, str]) -> dict[str, str]:
        return {name: params.get(name, "") for name in ("client_id", "redirect_uri", "state")}

    def _page(self, status: HTTPStatus, html: str) -> None:
        data = html.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
