"""The demo procurement site behaves like a real one, seen through real Chromium."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from pool_core.browser import launch_args
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite


@pytest.fixture
def site(simple_site: DemoSite) -> DemoSite:
    """These tests are about the simple page shape (plain links anywhere on the page)."""
    return simple_site


def test_it_signs_in_opens_a_po_and_downloads_a_verified_attachment(
    site: DemoSite, browser_path: str, tmp_path: Path
) -> None:
    truth = catalog.expected(catalog.SEVERAL, shape="simple")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(10_000)

            page.goto(f"{site.base_url}/order_headers/{catalog.SEVERAL[2:]}")
            assert "/sessions/new" in page.url  # the login wall
            assert page.locator("#user_email").count() == 1

            page.goto(site.signin_url(f"/order_headers/{catalog.SEVERAL[2:]}"))
            assert page.locator("h1").inner_text() == f"Purchase Order #{catalog.SEVERAL}"
            assert page.locator("#supplier_name").inner_text() == catalog.find(
                catalog.SEVERAL, shape="simple").supplier  # type: ignore[union-attr]

            links = page.locator("a[href*='attachment']")
            assert links.count() == len(truth.attachments)
            with page.expect_download() as info:
                links.first.click()
            download = info.value
            target = tmp_path / download.suggested_filename
            download.save_as(target)
        finally:
            browser.close()

    body = target.read_bytes()
    assert download.suggested_filename == truth.attachments[0].name
    assert hashlib.sha256(body).hexdigest() == truth.attachments[0].sha256
    assert body.startswith(b"%PDF-")


def test_it_signs_in_through_the_login_form(site: DemoSite, browser_path: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            page.goto(f"{site.base_url}/order_headers/{catalog.ONE_PDF[2:]}")
            page.fill("#user_email", "buyer@example.com")
            page.fill("#user_password", "demo-password")
            page.click("button[type=submit]")
            page.wait_for_url(f"**/order_headers/{catalog.ONE_PDF[2:]}")
            assert page.locator("a[href*='attachment']").count() == 1
        finally:
            browser.close()


def test_it_serves_error_pages_as_a_procurement_site_does(site: DemoSite) -> None:
    import urllib.error
    import urllib.request

    cookie = site.storage_state()["cookies"][0]
    def status(number: str) -> tuple[int, str]:
        request = urllib.request.Request(
            f"{site.base_url}/order_headers/{number[2:]}",
            headers={"Cookie": f"{cookie['name']}={cookie['value']}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    code, body = status(catalog.NOT_FOUND)
    assert code == 404 and "Oops! We couldn't find what you wanted" in body
    assert status(catalog.ACCESS_DENIED)[0] == 403
    assert status(catalog.SERVER_ERROR)[0] == 500
    assert [status(catalog.RATE_LIMITED)[0] for _ in range(3)] == [429, 429, 200]
    assert site.canary_hits == 0


def test_it_has_ground_truth_for_every_special_po() -> None:
    for number in catalog.SPECIALS:
        truth = catalog.expected(number, shape="simple")
        assert truth.status in {"COMPLETED", "PARTIAL", "NO_ATTACHMENTS", "PO_NOT_FOUND",
                                "ACCESS_DENIED", "FAILED", "TIMEOUT"}
        for attachment in truth.attachments:
            assert attachment.size > 0 and len(attachment.sha256) == 64
    requisition_only = catalog.expected(catalog.REQUISITION_ONLY, shape="simple")
    assert requisition_only.attachments[0].source == "requisition"
    batch = catalog.demo_batch("http://127.0.0.1:1", 40)
    assert len({po["po_number"] for po in batch}) == 40
    assert all(catalog.expected(po["po_number"], shape="simple").attachments for po in batch)
