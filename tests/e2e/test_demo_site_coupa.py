"""The demo site's "coupa" shape behaves like a real Coupa page, seen through real Chromium."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from pool_core.browser import launch_args
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite

VIEWPORT = {"width": 1280, "height": 720}
HEADER_SPANS = ".attachments-list [data-file-id]"
BAR = "#order_header_show_buttons"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright, browser_path: str) -> Iterator[Browser]:
    """A browser with a worker's flags."""
    browser = playwright.chromium.launch(executable_path=browser_path, args=launch_args())
    yield browser
    browser.close()


def signed_in(browser: Browser, site: DemoSite) -> BrowserContext:
    context = browser.new_context(accept_downloads=True, viewport=VIEWPORT,  # type: ignore[arg-type]
                                  storage_state=site.storage_state())  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    return context


def open_po(context: BrowserContext, site: DemoSite, number: str) -> Page:
    page = context.new_page()
    page.goto(f"{site.base_url}/order_headers/{catalog.digits_of(number)}", wait_until="load")
    return page


def po(number: str) -> catalog.DemoPO:
    found = catalog.find(number, shape="coupa")
    assert found is not None
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_po_page_has_the_coupa_structure_and_renders_comments_after_load(
        coupa_site: DemoSite, browser: Browser) -> None:
    order = po(catalog.SEVERAL)
    requisition_id = catalog.coupa_requisition_id(order)
    context = signed_in(browser, coupa_site)
    try:
        page = open_po(context, coupa_site, catalog.SEVERAL)
        # At `load` the comments app has not rendered yet: the mount is empty.
        assert page.locator("#s-mountCommentsApp").inner_html() == ""
        assert page.locator("section.commentsSection").count() == 0

        root = page.locator("html")
        assert root.get_attribute("data-controller") == "order_headers"
        assert root.get_attribute("data-id") == order.digits
        supplier = page.locator("section#supplier span.supplier-name.s-coupaSimpleTooltip")
        assert supplier.text_content() == f" {order.supplier}"
        assert order.supplier in (supplier.get_attribute("title") or "")
        link = page.locator("a#order_header_requisition_header")
        assert link.get_attribute("href") == f"/requisition_headers/{requisition_id}"
        assert link.inner_text() == requisition_id and order.digits not in requisition_id
        flash = page.locator("div.sticky#flash_container")
        assert flash.is_hidden() and flash.inner_html() == ""
        assert page.evaluate("document.documentElement.scrollHeight") > 3 * VIEWPORT["height"]
        assert page.locator(BAR).evaluate("e => getComputedStyle(e).position") == "fixed"

        headers = catalog.header_files(order)
        assert page.locator(HEADER_SPANS).all_inner_texts() == [
            f.attachment.name for f in headers]
        assert page.locator(f"{HEADER_SPANS}[href], .attachments-list a").count() == 0
        # The header attachments end the document: nothing in the flow after them.
        gap = page.evaluate("""() => {
            const group = document.querySelector('.attachments-list').closest('[role=group]');
            return document.documentElement.scrollHeight
                - (group.getBoundingClientRect().bottom + window.scrollY); }""")
        assert abs(gap) < 1

        page.wait_for_selector("#s-mountCommentsApp section.commentsSection.s-commentsSection")
        comments = catalog.coupa_comments(order)
        assert page.locator(".s-numComments").inner_text() == str(len(comments))
        assert page.locator("ul.comments_list li.comment.s-comment").count() == len(comments)
        links = page.locator(".attachmentsContainer ul.attachments__list "
                             "li.attachment.attachmentFile a[target=_blank]")
        expected = {coupa_site.base_url + f.path: f.site_name
                    for c in comments for f in c.files}
        assert {links.nth(i).get_attribute("href"): links.nth(i).get_attribute("title")
                for i in range(links.count())} == expected
    finally:
        context.close()


def test_a_po_without_attachments_shows_none_and_an_empty_comments_section(
        coupa_site: DemoSite, browser: Browser) -> None:
    context = signed_in(browser, coupa_site)
    try:
        for number, comments in ((catalog.NO_ATTACHMENTS, "0"), (catalog.REQUISITION_ONLY, "1")):
            page = open_po(context, coupa_site, number)
            assert page.locator(".attachments-list li.show.none").inner_text() == "None"
            page.wait_for_selector("section.commentsSection")
            assert page.locator(".s-numComments").inner_text() == comments  # notes only
            assert page.locator(".attachmentsContainer a").count() == 0

        # REQUISITION_ONLY's files are on its requisition: a span and a comment link.
        page.click("a#order_header_requisition_header")
        page.wait_for_selector("section.commentsSection")
        assert page.locator("html").get_attribute("data-controller") == "requisition_headers"
        order = po(catalog.REQUISITION_ONLY)
        on_requisition = [f for f in catalog.coupa_files(order) if f.on_requisition]
        assert page.locator(HEADER_SPANS).count() == 1
        assert page.locator(".attachmentsContainer a").get_attribute("title") == (
            on_requisition[1].site_name)
    finally:
        context.close()


def test_an_unauthenticated_visit_signs_in_at_the_identity_host(
        coupa_site: DemoSite, browser: Browser) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        target = f"{coupa_site.base_url}/order_headers/{catalog.ONE_PDF[2:]}"
        page.goto(target)
        assert page.url.startswith(f"{coupa_site.identity_url}/realms/demo/protocol/"
                                   "openid-connect/auth?client_id=coupa")
        page.fill("form#kc-form-login input#username", "buyer@example.com")
        page.fill("input#password", "wrong")
        page.click("#kc-login")
        assert "Invalid username or password." in page.locator("#input-error").inner_text()

        page.fill("input#username", "buyer@example.com")
        page.fill("input#password", "demo-password")
        page.click("#kc-login")
        page.wait_for_url(target)
        assert page.locator("span.supplier-name").count() == 1
        assert coupa_site.hits("/sessions/oidc_callback") == 1
        page.goto(f"{coupa_site.base_url}/order_headers")
        assert page.locator("#signed_in").count() == 1
    finally:
        context.close()


def test_a_header_span_under_the_button_bar_is_intercepted_until_the_bar_is_hidden(
        coupa_site: DemoSite, browser: Browser, tmp_path: Path) -> None:
    truth = catalog.expected(catalog.HEADER_ONLY, shape="coupa")
    context = signed_in(browser, coupa_site)
    try:
        page = open_po(context, coupa_site, catalog.HEADER_ONLY)
        span = page.locator(HEADER_SPANS).first
        page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
        with pytest.raises(Exception, match="intercepts pointer events"):
            span.click(timeout=2000)

        page.locator(BAR).evaluate("bar => { bar.style.display = 'none'; }")
        with page.expect_download() as info:
            span.click(timeout=2000)
        download = info.value
        target = tmp_path / download.suggested_filename
        download.save_as(target)
    finally:
        context.close()
    assert download.suggested_filename == truth.attachments[0].name
    assert sha256(target) == truth.attachments[0].sha256


def test_a_header_span_that_opens_a_window_downloads_through_the_popup(
        coupa_site: DemoSite, playwright: Playwright, browser_path: str, tmp_path: Path) -> None:
    truth = catalog.expected(catalog.HEADER_ONLY, shape="coupa")
    windowed = [f for f in catalog.header_files(po(catalog.HEADER_ONLY))
                if f.click == catalog.WINDOW]
    assert len(windowed) == 1
    # A worker's flags block new windows outright (--block-new-web-contents); a plain
    # browser shows what the page does: the popup's download arrives on the opener page.
    args = [a for a in launch_args() if a != "--block-new-web-contents"]
    browser = playwright.chromium.launch(executable_path=browser_path, args=args)
    try:
        page = open_po(signed_in(browser, coupa_site), coupa_site, catalog.HEADER_ONLY)
        page.locator(BAR).evaluate("bar => { bar.style.display = 'none'; }")
        span = page.locator(f"{HEADER_SPANS}[data-file-id='{windowed[0].file_id}']")
        with page.expect_popup() as popup, page.expect_download() as info:
            span.click(timeout=2000)
        assert popup.value is not None
        download = info.value
        target = tmp_path / download.suggested_filename
        download.save_as(target)
    finally:
        browser.close()
    expected = next(a for a in truth.attachments if a.name == windowed[0].site_name)
    assert download.suggested_filename == expected.name
    assert sha256(target) == expected.sha256


def test_a_pdf_linked_from_a_comment_is_served_inline(
        coupa_site: DemoSite, browser: Browser) -> None:
    truth = {a.name: a for a in catalog.expected(catalog.COMMENTS_ONLY, shape="coupa").attachments}
    context = signed_in(browser, coupa_site)
    try:
        page = open_po(context, coupa_site, catalog.COMMENTS_ONLY)
        page.wait_for_selector("section.commentsSection")
        links = page.locator(".attachmentsContainer a")
        hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
        assert len(hrefs) == len(truth) and all(h.startswith(coupa_site.base_url) for h in hrefs)
        for href in hrefs:
            response = context.request.get(href)
            name = href.rsplit("/", 1)[1]
            disposition = response.headers["content-disposition"]
            if name.endswith(".pdf"):
                assert response.headers["content-type"] == "application/pdf"
                assert disposition == f'inline; filename="{name}"'
            else:
                assert disposition.startswith(f'attachment; filename="{name}"')
            assert int(response.headers["content-length"]) == truth[name].size
            assert hashlib.sha256(response.body()).hexdigest() == truth[name].sha256
    finally:
        context.close()


def test_sessions_are_revoked_after_n_po_pages(coupa_site: DemoSite, browser: Browser) -> None:
    coupa_site.revoke_after = 2
    context = signed_in(browser, coupa_site)
    try:
        for number in ("PO200000", "PO200001"):
            page = open_po(context, coupa_site, number)
            assert page.url.startswith(coupa_site.base_url)
            page.close()
        page = open_po(context, coupa_site, "PO200002")
        assert page.url.startswith(coupa_site.identity_url)
        assert page.locator("form#kc-form-login").count() == 1
        assert coupa_site.revoke_after is None  # revoked once, then cleared
    finally:
        context.close()


def test_a_plain_browser_reaches_the_third_party_hosts(
        coupa_site: DemoSite, playwright: Playwright, browser_path: str) -> None:
    browser = playwright.chromium.launch(executable_path=browser_path)  # no worker flags
    try:
        context = signed_in(browser, coupa_site)
        page = open_po(context, coupa_site, "PO200003")
        page.wait_for_selector("section.commentsSection")
        assert coupa_site.third_party_hits >= 3  # agent script, loader, page view
        assert coupa_site.canary_hits == 0
        open_po(context, coupa_site, catalog.SUBREQUEST_OUT)
        page.wait_for_timeout(300)
        assert coupa_site.canary_hits >= 1  # its tracking image
    finally:
        browser.close()
    coupa_site.reset_counters()
    assert coupa_site.third_party_hits == 0 and coupa_site.canary_hits == 0


def test_it_serves_coupa_error_pages(coupa_site: DemoSite) -> None:
    cookie = coupa_site.storage_state()["cookies"][0]

    def fetch(path: str) -> tuple[int, str]:
        request = urllib.request.Request(f"{coupa_site.base_url}{path}",
                                         headers={"Cookie": f"{cookie['name']}={cookie['value']}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    code, body = fetch(f"/order_headers/{catalog.NOT_FOUND[2:]}")
    assert code == 404 and ('<div class="sticky" id="flash_container"><div class="flash_error">'
                            "Oops! We couldn't find what you wanted</div></div>") in body
    code, body = fetch(f"/order_headers/{catalog.ACCESS_DENIED[2:]}")
    assert code == 403 and "You are not authorized" in body
    assert fetch(f"/order_headers/{catalog.SERVER_ERROR[2:]}")[0] == 500
    assert [fetch(f"/order_headers/{catalog.RATE_LIMITED[2:]}")[0] for _ in range(3)] == [
        429, 429, 200]
    assert fetch("/attachment/attachment_file/file/1399999999/x.pdf")[0] == 404
    assert fetch(f"/order_headers/{catalog.COMMENTS_NEVER_RENDER[2:]}/comments.json")[0] == 500
    assert coupa_site.third_party_hits == 0 and coupa_site.canary_hits == 0


def test_the_coupa_ground_truth_covers_every_behaviour() -> None:
    for number in catalog.SPECIALS + catalog.COUPA_SPECIALS:
        truth = catalog.expected(number, shape="coupa")
        for attachment in truth.attachments:
            assert attachment.source in ("header", "comments", "requisition")
            assert attachment.name == catalog.site_name(attachment.name)
    assert catalog.expected(catalog.SUBREQUEST_OUT, shape="coupa").status == "COMPLETED"
    never = catalog.expected(catalog.COMMENTS_NEVER_RENDER, shape="coupa")
    assert (never.status, never.reason, never.attachments) == ("FAILED", "LAYOUT_UNKNOWN", ())
    mismatch = catalog.expected(catalog.TYPE_MISMATCH, shape="coupa")
    assert mismatch.status == "COMPLETED" and mismatch.warnings == ("scanned-invoice.pdf",)
    assert mismatch.warnings[0] in [a.name for a in mismatch.attachments]
    # The simple shape does not know the coupa-only numbers, and keeps its answers.
    assert catalog.expected(catalog.TYPE_MISMATCH, shape="simple").status == "PO_NOT_FOUND"
    assert catalog.expected(catalog.SUBREQUEST_OUT, shape="simple").status == "COMPLETED"

    batch = catalog.coupa_batch(40)
    assert len(set(batch)) == 40 and not {catalog.HANG, catalog.MEMORY_HOG} & set(batch)
    files = [f for number in batch for f in catalog.coupa_files(po(number))]
    assert {f.source for f in files} == {"header", "comments", "requisition"}
    assert {f.click for f in files if f.place == "header"} == {"assign", "open"}
    assert sum(f.inline for f in files) >= 3
    for number in batch[-20:]:
        assert catalog.po_of_requisition(catalog.coupa_requisition_id(po(number))) == po(number)
