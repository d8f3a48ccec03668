"""The dashboard tells the truth about a short failed run, and stays legible doing it.

One seeded server (`manage.py dashboard_preview` on the rows of dashboard_seed.py, which
go through the real PO lifecycle) and one Chromium for the whole module:

* long failure messages stay inside their boxes at 1280 px and at 390 px wide;
* failure thumbnails show the page the worker saw, not a white box;
* the "Finished per minute" chart spans the run (3 minutes), not 30 minutes;
* status counts add up to the batch and RUNNING never exceeds the live workers, also
  after a live update that counts the host's claimed-ahead POs as RUNNING;
* a session the site revoked shows the last probe's answer and when it was asked;
* worker cards link to their PO; failures link to the attempt and its evidence.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from pool_core.browser import launch_args
from tests.e2e import dashboard_seed as seed
from tests.e2e.test_dashboard_live import PreviewServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "truth-password-42"
UPDATE_TIMEOUT = 5_000

pytestmark = pytest.mark.timeout(180)

# An error page as the demo site draws it: a little text at the top left, white below.
ERROR_PAGE = """<!doctype html><html><body style="font-family: sans-serif; margin: 32px">
<b>Demo ERP</b><br><a href="#">Orders</a> <a href="#">Requests</a> <a href="#">Sign out</a>
<h2>Oops! We couldn't find what you wanted</h2><p>The record does not exist or was removed.
</p></body></html>"""


@pytest.fixture(scope="module")
def browser(browser_path: str) -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(browser: Browser, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[PreviewServer]:
    data = tmp_path_factory.mktemp("dashboard-truth")
    # The evidence screenshot, taken as a worker takes it (1280x720, the page's top left).
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_content(ERROR_PAGE)
    shot = data / "evidence.png"
    page.screenshot(path=str(shot))
    page.close()
    preview = PreviewServer(data)
    preview.migrate()
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         f"from tests.e2e.dashboard_seed import seed; seed({str(shot)!r})"],
        cwd=ROOT, env=preview.env, capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    preview.start("--user", f"operators:otto:{PASSWORD}")
    yield preview
    preview.stop()


def open_dashboard(browser: Browser, server: PreviewServer, width: int = 1280,
                   javascript: bool = True) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": width, "height": 900},
                                  java_script_enabled=javascript)
    context.add_cookies([{"name": "sessionid", "value": server.sessions["otto"],
                          "url": server.url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{server.url}/")
    if javascript:  # live: the WebSocket's snapshot has been drawn by dashboard.js
        expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
    return context, page


@pytest.fixture(scope="module")
def dashboard(browser: Browser, server: PreviewServer) -> Iterator[Page]:
    context, page = open_dashboard(browser, server)
    yield page
    context.close()


# -- a. long messages -------------------------------------------------------------------

MEASURE = """() => {
    // Each element's box as painted: cut by the ancestors that clip (overflow hidden).
    function visible(node, item) {
        let rect = node.getBoundingClientRect();
        let [l, t, r, b] = [rect.left, rect.top, rect.right, rect.bottom];
        for (let up = node.parentElement; up && up !== item; up = up.parentElement) {
            if (getComputedStyle(up).overflow === "visible") continue;
            const clip = up.getBoundingClientRect();
            [l, t, r, b] = [Math.max(l, clip.left), Math.max(t, clip.top),
                            Math.min(r, clip.right), Math.min(b, clip.bottom)];
        }
        return [l, t, r, b];
    }
    const hasText = (node) => [...node.childNodes].some(
        (child) => child.nodeType === Node.TEXT_NODE && child.textContent.trim());
    const box = document.getElementById("failures").getBoundingClientRect();
    const items = [...document.querySelectorAll("#failures article.failure")];
    const out = {box: [box.left, box.right], items: [], overflowing: [], overlaps: []};
    const extents = items.map((item) => {
        const own = item.getBoundingClientRect();
        let [l, t, r, b] = [own.left, own.top, own.right, own.bottom];
        for (const node of item.querySelectorAll("*")) {
            const [nl, nt, nr, nb] = visible(node, item);
            if (nr <= nl && nb <= nt) continue;
            // Out of the item's box, or text cut off sideways inside its own box.
            if (nr > own.right + 0.5 || nl < own.left - 0.5 || nb > own.bottom + 0.5 ||
                (hasText(node) && node.scrollWidth > node.clientWidth + 1))
                out.overflowing.push(`${item.dataset.po} ${node.tagName}.${node.className}`);
            [l, t, r, b] = [Math.min(l, nl), Math.min(t, nt), Math.max(r, nr), Math.max(b, nb)];
        }
        out.items.push([l, r]);
        return [l, t, r, b];
    });
    extents.forEach((a, i) => extents.forEach((b, j) => {
        const apart = a[2] <= b[0] + 0.5 || b[2] <= a[0] + 0.5 ||
                      a[3] <= b[1] + 0.5 || b[3] <= a[1] + 0.5;
        if (i < j && !apart)
            out.overlaps.push([i, j]);
    }));
    return out;
}"""


STICKING_OUT = """() => {
    const out = [];
    for (const section of document.querySelectorAll(".dash section")) {
        const box = section.getBoundingClientRect();
        for (const node of section.querySelectorAll("*")) {
            let clipped = false;
            for (let up = node.parentElement; up !== section; up = up.parentElement)
                if (getComputedStyle(up).overflow !== "visible") clipped = true;
            const rect = node.getBoundingClientRect();
            if (!clipped && rect.width && rect.right > box.right + 0.5)
                out.push(`${section.getAttribute("aria-label")}: ${node.tagName}#${node.id}`);
        }
    }
    return out;
}"""


@pytest.mark.parametrize("width", [1280, 390])
def test_long_failure_messages_stay_in_their_boxes(browser: Browser, server: PreviewServer,
                                                   width: int) -> None:
    context, page = open_dashboard(browser, server, width)
    try:
        expect(page.locator("#failures article.failure")).to_have_count(seed.FAILED)
        found = page.evaluate(MEASURE)
        assert found["overlaps"] == [] and found["overflowing"] == [], found
        left, right = found["box"]
        assert right <= width, found
        # Nor does anything else push the page wider than the screen, or stick out of
        # its section (sections clip what sticks out: it would be cut off unseen).
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.evaluate(STICKING_OUT) == []
        assert all(left - 0.5 <= lo and hi <= right + 0.5 for lo, hi in found["items"]), found
        # The whole message is one hover (its title) or one click or tap away.
        message = page.locator("#failures article.failure .msg").first
        assert message.get_attribute("title") in {seed.long_message(i)
                                                  for i in range(seed.FINISHED)}
        clamped = message.bounding_box()
        message.click()
        opened = message.bounding_box()
        assert clamped and opened and opened["height"] > clamped["height"] * 1.5
        found = page.evaluate(MEASURE)  # open, it still stays in its box
        assert found["overlaps"] == [] and found["overflowing"] == [], found
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-truth-{width}.png"), full_page=True)
    finally:
        context.close()


# -- b. thumbnails ----------------------------------------------------------------------

INK = """async (data) => {
    const img = new Image();
    img.src = "data:image/png;base64," + data;
    await img.decode();
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [img.width, img.height];
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const pixels = context.getImageData(0, 0, img.width, img.height).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4)
        if (pixels[i] + pixels[i + 1] + pixels[i + 2] < 3 * 160) ink += 1;
    return ink / (pixels.length / 4);
}"""


VISIBLE = """(img) => {
    const a = img.getBoundingClientRect(), b = img.parentElement.getBoundingClientRect();
    const left = Math.max(a.left, b.left), top = Math.max(a.top, b.top);
    return {x: left + scrollX, y: top + scrollY,
            width: Math.min(a.right, b.right) - left, height: Math.min(a.bottom, b.bottom) - top};
}"""


def ink(page: Page, png: bytes) -> float:
    """The share of a PNG's pixels dark enough to be text."""
    share: float = page.evaluate(INK, base64.b64encode(png).decode())
    return share


def test_failure_thumbnails_show_the_page_as_it_was(dashboard: Page) -> None:
    images = dashboard.locator("#failures article.failure img")
    expect(images).to_have_count(seed.FAILED)
    for img in images.all():
        img.scroll_into_view_if_needed()
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("i => i.naturalWidth") == 1280  # the stored screenshot itself
        # What the operator sees: the thumbnail as painted (clipped by its box), not
        # the file behind it.
        shown = dashboard.screenshot(full_page=True, clip=img.evaluate(VISIBLE))
        assert ink(dashboard, shown) > 0.02, "the thumbnail is (nearly) blank"


# -- c. chart ---------------------------------------------------------------------------

def test_the_chart_spans_the_run_not_thirty_minutes(dashboard: Page) -> None:
    dashboard.wait_for_function("() => window.Chart && window.Chart.getChart('throughput-chart')")
    data = dashboard.evaluate("""() => {
        const chart = window.Chart.getChart("throughput-chart");
        return {labels: chart.data.labels, ok: chart.data.datasets[0].data,
                failed: chart.data.datasets[1].data};
    }""")
    bars = [ok + failed for ok, failed in zip(data["ok"], data["failed"], strict=True)]
    assert 3 <= len(bars) <= 5, data  # a 3-minute run: 3 or 4 minutes of bars
    assert sum(bars) == seed.FINISHED, data
    assert max(bars) < seed.FINISHED / 2, data  # spread out, not all in the last bar
    assert "30 minutes" not in (dashboard.locator("#throughput-chart")
                                .get_attribute("aria-label") or "")


# -- d. counts --------------------------------------------------------------------------

def shown_counts(page: Page) -> dict[str, int]:
    items = page.locator("#by-status li").all()
    return {str(item.get_attribute("data-status")): int(item.locator("b").inner_text())
            for item in items}


def busy_cards(page: Page) -> int:
    return page.locator("#workers article.card.state-busy").count()


def assert_counts_true(page: Page) -> dict[str, int]:
    counts = shown_counts(page)
    assert sum(counts.values()) == seed.POS == int(page.locator("#progress-total").inner_text())
    assert counts.get("RUNNING", 0) <= busy_cards(page), counts
    assert int(page.locator('[data-counter="active"]').inner_text()) == busy_cards(page)
    return counts


def test_status_counts_add_up_and_running_never_exceeds_live_workers(
        browser: Browser, server: PreviewServer) -> None:
    context, page = open_dashboard(browser, server)
    try:
        counts = assert_counts_true(page)
        assert counts["RUNNING"] == seed.WORKERS
        assert counts["CLAIMED"] == seed.CLAIMED - seed.WORKERS  # claimed ahead: waiting
        assert "queued on host" in page.locator('#by-status li[data-status="CLAIMED"]').inner_text()
        # A live update as the supervisor sends it: its counts say RUNNING 8, and one
        # worker has just gone idle.
        applied = int(page.locator("#dashboard").get_attribute("data-updates-applied") or 0)
        raw = {"QUEUED": 32, "RUNNING": 8, "COMPLETED": 16, "FAILED": 4}
        server.send(workers={f"{seed.HOST}/w4": {"state": "idle", "po_number": "", "phase": ""}},
                    pool={"host": seed.HOST, "state": "RUNNING", "counts": raw,
                          "total": seed.POS})
        page.wait_for_function(f"() => Number(document.getElementById('dashboard')"
                               f".dataset.updatesApplied) > {applied}", timeout=UPDATE_TIMEOUT)
        expect(page.locator("#workers article.card.state-busy")).to_have_count(3)
        counts = assert_counts_true(page)
        assert counts["RUNNING"] == 3 and counts["CLAIMED"] == 5
    finally:
        context.close()
    context, page = open_dashboard(browser, server, javascript=False)  # the server's HTML
    try:
        assert_counts_true(page)
    finally:
        context.close()


# -- e. sessions ------------------------------------------------------------------------

def test_a_revoked_session_shows_the_last_probe_answer(dashboard: Page) -> None:
    row = dashboard.locator("#site-sessions li", has=dashboard.get_by_text("demo", exact=True))
    expect(row).to_have_class("session-signed_out")
    text = row.inner_text()
    assert "last signed in" not in text, text
    assert text.split(":", 1)[1].strip().startswith("signed out"), text
    checked = row.locator("time")
    assert checked.get_attribute("datetime"), text  # when the probe answered
    assert "the site asked for a login" in text


# -- f. links ---------------------------------------------------------------------------

def test_worker_cards_link_to_their_po(browser: Browser, dashboard: Page,
                                       server: PreviewServer) -> None:
    selector = f'article[data-key="{seed.HOST}/w1"] [data-f="po_number"] a'
    link = dashboard.locator(selector)
    number = link.inner_text()
    assert number.startswith("PO")
    href = str(link.get_attribute("href"))
    response = dashboard.request.get(server.url + href)
    assert response.ok and f"<h1>{number} " in response.text()
    context, page = open_dashboard(browser, server, javascript=False)  # the server's HTML
    try:
        assert page.locator(selector).get_attribute("href") == href
    finally:
        context.close()


def test_failures_link_to_the_attempt_with_its_evidence(browser: Browser,
                                                       server: PreviewServer) -> None:
    context, page = open_dashboard(browser, server)
    try:
        failure = page.locator("#failures article.failure").first
        link = failure.locator("a.attempt")
        href = str(link.get_attribute("href"))
        assert "#attempt-" in href
        link.click()
        anchor = href.split("#", 1)[1]
        attempt = page.locator(f"#{anchor}")
        expect(attempt).to_be_visible()
        expect(attempt.locator("img.evidence")).to_be_visible()
        expect(attempt.locator("a", has_text="Page HTML")).to_be_visible()
    finally:
        context.close()
