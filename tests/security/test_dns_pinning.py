"""DNS rebinding and WebSockets: the browser's connections go only where the check said.

The request guard resolves a URL's host and checks every address, but the browser used
to resolve the name again on its own; a DNS server answering a public address to the
check and 127.0.0.1 to the browser got it onto this machine. WebSockets were not seen
by the guard at all. Every worker's Chromium now connects through its egress proxy,
which checks the name itself and connects to an address it checked.

Here Chromium's own resolver is told the name is the canary (127.0.0.2), the second
answer of a rebinding DNS server, while the check's answer is the demo site: the
connection must go to the demo site and the canary must count no hit.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from pool_core import sites
from pool_core.browser import launch_args
from pool_core.config import JobEnv
from pool_core.egress_proxy import EgressProxy
from pool_core.errors import UnsafeURLError
from pool_core.messages import POStatus, Task
from pool_core.processing import process_po
from pool_core.sites import SitePreset, load_preset
from poolsite.demo_erp.server import DemoSite

NAME = "po.rebind.example"


def demo_tenant(site: DemoSite) -> SitePreset:
    return load_preset("demo").for_tenant(site.base_url)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def pinned_browser(playwright: Playwright, browser_path: str,
                   site: DemoSite) -> Iterator[tuple[Browser, EgressProxy]]:
    """A browser through a proxy that pins NAME to the demo site's address, while the
    browser's own resolver (the last --host-resolver-rules wins) says the canary."""
    tenant = demo_tenant(site)

    def allowed(host: str) -> tuple[str, ...]:
        return ("127.0.0.1",) if host == NAME else tenant.connect_addresses(host)

    with EgressProxy(allowed) as proxy:
        rebound = f"--host-resolver-rules=MAP {NAME} {site.canary_host}"
        browser = playwright.chromium.launch(
            executable_path=browser_path,
            args=[*launch_args(), *proxy.browser_args(), rebound])
        try:
            yield browser, proxy
        finally:
            browser.close()


def test_the_connection_goes_to_the_checked_address_not_the_browsers_answer(
        pinned_browser: tuple[Browser, EgressProxy], site: DemoSite) -> None:
    browser, _proxy = pinned_browser
    port = site.base_url.rsplit(":", 1)[1]
    page = browser.new_page()
    response = page.goto(f"http://{NAME}:{port}/healthz")
    assert response is not None and response.ok
    assert page.locator("body").inner_text() == "ok"  # the demo site answered
    assert site.visits("/healthz") == 1 and site.canary_hits == 0


def test_the_browser_without_the_proxy_would_follow_the_second_answer(
        playwright: Playwright, browser_path: str, site: DemoSite) -> None:
    """The scenario is real: the same browser flags minus the proxy reach the canary."""
    port = site.canary_url.rsplit(":", 1)[1]
    browser = playwright.chromium.launch(
        executable_path=browser_path,
        args=[*launch_args(), f"--host-resolver-rules=MAP {NAME} {site.canary_host}"])
    try:
        browser.new_page().goto(f"http://{NAME}:{port}/")
    finally:
        browser.close()
    assert site.canary_hits == 1


def test_websockets_and_hosts_off_the_list_are_refused_at_the_connection(
        pinned_browser: tuple[Browser, EgressProxy], site: DemoSite) -> None:
    browser, proxy = pinned_browser
    page = browser.new_page()
    page.goto(site.base_url + "/healthz")
    canary = site.canary_url.removeprefix("http://")
    outcome = page.evaluate("""url => new Promise(done => {
        const socket = new WebSocket(url);
        socket.onopen = () => done("open");
        socket.onerror = () => done("error");
    })""", f"ws://{canary}/live")
    assert outcome == "error"
    assert site.canary_hits == 0  # the guard never saw it; the proxy refused it
    (refused,) = proxy.take_failures()
    assert (refused.host, refused.refused) == (site.canary_host, True)
    assert "not in the allow-list" in refused.reason


def test_a_rebinding_answer_is_refused_after_the_first_was_pinned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The site's check: the answer checked is the one connected to; a later private
    answer (once the cached one expires) is refused, never connected to."""
    answers = iter([("93.184.215.14",), ("127.0.0.1",)])
    monkeypatch.setattr(sites, "_resolved", {})
    monkeypatch.setattr(sites.socket, "getaddrinfo", lambda *a, **k: [
        (2, 1, 6, "", (address, 0)) for address in next(answers)])
    generic = load_preset("generic")
    assert generic.connect_addresses(NAME) == ("93.184.215.14",)
    assert generic.connect_addresses(NAME) == ("93.184.215.14",)  # cached: still pinned
    monkeypatch.setattr(sites, "_resolved", {})  # the minute is over
    with pytest.raises(UnsafeURLError, match=r"resolves to 127\.0\.0\.1"):
        generic.connect_addresses(NAME)


def test_private_targets_need_the_sites_permission(site: DemoSite) -> None:
    tenant = demo_tenant(site)
    assert tenant.connect_addresses("127.0.0.1") == ("127.0.0.1",)
    strict = dataclasses.replace(tenant, allow_private=False)
    with pytest.raises(UnsafeURLError, match="loopback or private"):
        strict.connect_addresses("localhost")
    with pytest.raises(UnsafeURLError, match="not in the allow-list"):
        tenant.connect_addresses("example.com")


def test_a_po_whose_host_rebinds_fails_as_blocked_and_names_the_address(
        monkeypatch: pytest.MonkeyPatch, playwright: Playwright, browser_path: str,
        site: DemoSite, tmp_path: Path) -> None:
    """The whole job: the guard's lookup (this thread) gets a public answer and lets the
    page through; the lookup for the connection (the proxy's) gets the canary's address,
    as the browser's own resolver does. The PO fails as BLOCKED_URL, naming it."""
    real = sites.resolve

    def rebinding(host: str) -> tuple[str, ...]:
        if host != NAME:
            return real(host)
        first = threading.current_thread() is threading.main_thread()
        return ("93.184.215.14",) if first else (site.canary_host,)

    monkeypatch.setattr(sites, "resolve", rebinding)
    generic = load_preset("generic")
    with EgressProxy(generic.connect_addresses) as proxy:
        browser = playwright.chromium.launch(
            executable_path=browser_path,
            args=[*launch_args(), *proxy.browser_args(),
                  f"--host-resolver-rules=MAP {NAME} {site.canary_host}"])
        try:
            job = JobEnv(worker_id=1, output_root=str(tmp_path / "out"),
                         work_root=str(tmp_path / "work"),
                         evidence_dir=str(tmp_path / "evidence"), site=generic,
                         nav_timeout_s=10.0, download_timeout_s=5.0,
                         egress_failures=proxy.take_failures)
            port = site.canary_url.rsplit(":", 1)[1]
            task = Task(key="k", po_number="PO1", supplier="S", amount=Decimal(1),
                        url=f"http://{NAME}:{port}/internal-admin")
            result = process_po(browser.new_page(), task, job)
        finally:
            browser.close()
    assert (result.status, result.reason) == (POStatus.FAILED, "BLOCKED_URL")
    assert f"resolves to {site.canary_host}" in result.message
    assert site.canary_hits == 0
