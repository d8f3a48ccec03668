"""Keep a worker's browser on the site's allow-list (SSRF guard), redirects included.

Two layers, because Playwright's routing alone misses redirects:

* `context.route("**/*")` sees the first request of every page of the context and
  aborts any whose URL the preset refuses, and every request of a page we did not
  open (a popup), whose redirects nothing else would see;
* Playwright does not call route handlers for the hops of a redirect (documented;
  probed here: a 302 to the canary host went straight through), so on each page we
  open, a CDP session with `Fetch.enable` pauses every request, redirect hops
  included, and fails those the preset refuses.

Nothing off the list is ever fetched, but what a refusal means depends on the request:

* the main frame leaving the site (a PO page, or a click download, redirected to
  another host: on Coupa that is the identity provider of an expired session) is
  recorded in `left_site`; the job then decides between LOGIN_REQUIRED and BLOCKED_URL;
* a document in a sub-frame (our download frames) is recorded in `blocked_frames`,
  and that download fails as BLOCKED_URL;
* everything else (analytics and monitoring scripts, beacons, fonts, images from
  other hosts: every real Coupa page loads some) is aborted quietly and counted in
  `subresources_blocked`; it is not the PO's business.

Host names are resolved and every address checked (a name pointing at 127.0.0.1 or
a metadata address is refused unless the site allows private targets). Neither layer
sees WebSockets, and the browser would resolve a name again on its own (a DNS answer
that changes after our check: rebinding); both are held one level down, where the
worker's browser connects only through its egress proxy (egress_proxy.py), which
checks every connection's host again and connects to the very address it checked.
Attachments are fetched through iframes for this reason too (see downloads.py).
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from playwright.sync_api import BrowserContext, CDPSession, Page, Route
from playwright.sync_api import Error as PlaywrightError

from pool_core.sites import SitePreset

log = logging.getLogger(__name__)

# Not network requests: the page's own in-memory content.
_LOCAL_SCHEMES = ("data", "blob", "about")
_WEBSOCKET_SCHEMES = {"ws": "http", "wss": "https"}


class RequestGuard:
    """Abort every request of a context (and redirect hop of a page) off the allow-list."""

    def __init__(self, site: SitePreset) -> None:
        self.site = site
        self.left_site: list[tuple[str, str]] = []  # main-frame navigations refused
        self.blocked_frames: list[tuple[str, str]] = []  # sub-frame documents refused
        self.subresources_blocked: list[str] = []  # other requests refused (distinct URLs)
        self._main_frames: set[str] = set()  # CDP ids of our pages' main frames
        self._context: BrowserContext | None = None
        self._sessions: list[tuple[CDPSession, Page]] = []
        self._pages: list[Page] = []

    def problem(self, url: str) -> str | None:
        """Return why the browser may not request `url`, or None when it may."""
        scheme = url.partition(":")[0].lower()
        if scheme in _LOCAL_SCHEMES:
            return None
        if scheme in _WEBSOCKET_SCHEMES:
            parts = urlsplit(url)
            url = urlunsplit((_WEBSOCKET_SCHEMES[scheme], *parts[1:]))
        return self.site.check_resolved(url)

    def install(self, context: BrowserContext) -> None:
        """Route every request of `context` through the allow-list."""
        context.route("**/*", self._on_route)
        self._context = context

    def watch(self, page: Page) -> None:
        """Also check the redirect hops of `page`'s requests (Chromium's Fetch domain)."""
        assert self._context is not None, "install() first"
        self._pages.append(page)
        try:
            session = self._context.new_cdp_session(page)
        except PlaywrightError:
            log.warning("no CDP session (not Chromium?): redirect hops are not checked",
                        exc_info=True)
            return
        session.on("Fetch.requestPaused", lambda event: self._on_paused(session, event))
        tree = session.send("Page.getFrameTree")
        self._main_frames.add(tree["frameTree"]["frame"]["id"])
        session.send("Fetch.enable", {"patterns": [{"urlPattern": "*",
                                                    "requestStage": "Request"}]})
        self._sessions.append((session, page))

    def stop_loading(self) -> None:
        """Abandon a navigation that hangs, so the page can be inspected (evidence)."""
        for session, _page in self._sessions:
            with suppress(PlaywrightError):
                session.send("Page.stopLoading")

    def remove(self) -> None:
        """Stop guarding (a persistent context outlives the PO)."""
        for session, page in self._sessions:
            if not page.is_closed():  # a closed page took its session with it
                with suppress(PlaywrightError):
                    session.detach()
        self._sessions.clear()
        self._pages.clear()
        self._main_frames.clear()
        if self._context is not None:
            with suppress(PlaywrightError):  # the context is closed
                self._context.unroute("**/*", self._on_route)
            self._context = None

    def _on_route(self, route: Route) -> None:
        url = route.request.url
        why = self.problem(url)
        try:
            if why:
                self._record(url, why, self._kind_of(route))
                route.abort("blockedbyclient")
            elif not self._from_our_page(route):
                log.info("refused a request of a popup: %s", url[:300])
                route.abort("blockedbyclient")
            else:
                route.fallback()
        except PlaywrightError:
            pass  # the page went away while the request waited; nothing to let through

    @staticmethod
    def _kind_of(route: Route) -> str:
        request = route.request
        if not request.is_navigation_request():
            return "subresource"
        try:
            return "main" if request.frame.parent_frame is None else "frame"
        except PlaywrightError:
            return "main"  # a popup's first navigation: it would leave with the page

    def _from_our_page(self, route: Route) -> bool:
        try:
            page = route.request.frame.page
        except PlaywrightError:
            # No frame yet: a popup's first navigation (refused), or a service worker's
            # request, which has no page (its URL was checked).
            return not route.request.is_navigation_request()
        return any(page is ours for ours in self._pages)

    def _on_paused(self, session: CDPSession, event: dict[str, Any]) -> None:
        url = event["request"]["url"]
        why = self.problem(url)
        try:
            if why:
                self._record(url, why, self._kind_of_paused(event))
                session.send("Fetch.failRequest", {"requestId": event["requestId"],
                                                   "errorReason": "BlockedByClient"})
            else:
                session.send("Fetch.continueRequest", {"requestId": event["requestId"]})
        except PlaywrightError:
            pass  # the page closed while the request was paused

    def _kind_of_paused(self, event: dict[str, Any]) -> str:
        if event.get("resourceType") != "Document":
            return "subresource"
        return "main" if event.get("frameId") in self._main_frames else "frame"

    def _record(self, url: str, why: str, kind: str) -> None:
        url = url[:500]
        if kind == "subresource":
            if url not in self.subresources_blocked:
                log.debug("aborted a sub-request to %s: %s", url[:300], why)
                self.subresources_blocked.append(url)
            return
        log.warning("blocked %s navigation to %s: %s",
                    "a page" if kind == "main" else "a frame", url[:300], why)
        seen = self.left_site if kind == "main" else self.blocked_frames
        if all(known != url for known, _ in seen):
            seen.append((url, why))
