"""An operator runs a real batch from the dashboard: runpool, real workers, real Chromium.

    this test ─ Playwright ─▶ Chromium ─▶ runpool (daphne + supervisor) ─▶ 2-4 workers
                                                                          └▶ demo site

Upload through the form, start, watch cards change live, pause (workers go idle after
their PO), resume, scale 2 → 4 (four cards busy), stop, and the page's final counts
equal the database's. A viewer's page follows along and has no controls.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pool_core.browser import launch_args
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import Deployment, deployment, free_port, serving, stop, wait_for

PASSWORD = "e2e-password-5678"
POS = 60
LONG = 120_000  # ms: workers start Chromium on a shared 2-core machine

pytestmark = pytest.mark.timeout(600)

MAKE_USERS = f"""
from django.contrib.auth.models import Group, User
for name, role in (("otto", "operators"), ("vera", "viewers")):
    user = User.objects.create_user(name, password={PASSWORD!r})
    user.groups.add(Group.objects.get(name=role))
"""
SITE = "Demo site"


@pytest.fixture
def live(site: DemoSite, tmp_path: Path) -> Iterator[tuple[Deployment, str]]:
    site.latency = 0.3  # slow enough to watch a PO go by, fast enough to finish
    deploy = deployment(tmp_path, site)
    deploy.manage("shell", "-c", MAKE_USERS)
    deploy.manage("shell", "-c", "from poolsite.batches.models import Site; "
                  f"Site.ensure({SITE!r}, 'demo', {site.base_url!r}, via='test')")
    port = free_port()
    proc = deploy.runpool("--port", str(port), "--storage-state",
                          str(tmp_path / "storage-state.json"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: serving(f"{url}/accounts/login/"), 60, "runpool to serve")
        yield deploy, url
    finally:
        stop(proc, timeout=60)
        site.latency = 0.0
    wait_for(lambda: _leftovers(deploy) == [], 30, "workers' browsers and temp roots to go")


def _leftovers(deploy: Deployment) -> list[str]:
    # The drivers' shared Node compile cache is kept on purpose (pool_core, 2d30edc).
    return [item for item in deploy.leftovers() if "node-compile-cache" not in item]


def sign_in(browser: Browser, url: str, name: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{url}/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.locator("input[name=password]").press("Enter")
    expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
    page.evaluate("window.__sameDocument = true")
    return page


def upload(page: Page, url: str, site: DemoSite, folder: Path) -> None:
    path = folder / "demo-batch.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["po_number", "supplier", "url", "amount"])
        writer.writeheader()
        writer.writerows(catalog.demo_batch(site.base_url, POS))
    page.goto(f"{url}/batches/upload/")
    page.set_input_files("input[name=file]", str(path))
    page.select_option("select[name=site]", SITE)
    page.fill("input[name=name]", "e2e demo batch")
    page.click("button[type=submit]")
    page.click("text=Create the batch")
    page.goto(f"{url}/")
    expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
    page.evaluate("window.__sameDocument = true")


def busy(page: Page) -> int:
    return page.locator("#workers article.card.state-busy").count()


def test_an_operator_runs_a_batch_from_the_dashboard(
        live: tuple[Deployment, str], site: DemoSite, browser_path: str, tmp_path: Path) -> None:
    deploy, url = live
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            page = sign_in(browser, url, "otto")
            upload(page, url, site, tmp_path)
            watcher = sign_in(browser, url, "vera")
            assert watcher.locator("#controls").count() == 0

            expect(page.locator("#batch-select")).to_contain_text(f"{POS} queued")
            page.fill("#scale-size", "2")
            page.click('button[data-action="scale"]')
            expect(page.locator("#plan-size")).to_have_text("2")
            page.click('button[data-action="start"]')
            expect(page.locator("#plan-state")).to_have_text("running")
            wait_for(lambda: busy(page) == 2, LONG / 1000, "two busy workers")
            first_po = page.locator('#workers article.card [data-f="po_number"]').first
            seen = first_po.inner_text()
            expect(first_po).not_to_have_text(seen, timeout=LONG)  # the next PO, live
            wait_for(lambda: busy(watcher) >= 1, 30, "the viewer to see busy workers")

            page.click('button[data-action="pause"]')
            expect(page.locator("#pool-state")).to_have_text("paused")
            wait_for(lambda: busy(page) == 0, LONG / 1000, "workers idle after their PO")
            _wait_counts_agree(page, deploy, "the paused pool's counts on the page")
            paused = _db_counts(deploy)["done"]
            time.sleep(3)
            assert _db_counts(deploy)["done"] == paused  # nothing is processed while paused

            page.click('button[data-action="resume"]')
            wait_for(lambda: busy(page) >= 1, LONG / 1000, "work to resume")
            page.fill("#scale-size", "4")
            page.click('button[data-action="scale"]')
            wait_for(lambda: busy(page) == 4, LONG / 1000, "four busy workers")
            expect(page.locator('[data-counter="active"]')).to_have_text("4")
            page.screenshot(path=str(_artifacts() / "dashboard-run.png"), full_page=True)
            wait_for(lambda: busy(watcher) == 4, 30, "the viewer to see four busy workers")

            page.click('#pool-form button[data-action="stop"]')
            expect(page.locator("#plan-state")).to_have_text("idle", timeout=LONG)
            _wait_counts_agree(page, deploy, "the final counts on the page")
            assert _db_counts(deploy)["done"] > 0
            for each in (page, watcher):
                assert each.evaluate("window.__sameDocument") is True  # never reloaded
        finally:
            browser.close()


def _artifacts() -> Path:
    folder = Path(__file__).resolve().parents[2] / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder


def _wait_counts_agree(page: Page, deploy: Deployment, what: str) -> None:
    try:
        wait_for(lambda: _page_counts(page) == _db_counts(deploy), 30, what)
    except AssertionError:
        raise AssertionError(f"{what}: page {_page_counts(page)} != database "
                             f"{_db_counts(deploy)}") from None


def _page_counts(page: Page) -> dict[str, int]:
    # One read in the page, so that a live update cannot land between two reads (the
    # RUNNING line leaves the list when the last PO finishes).
    return page.evaluate("""() => {
        const text = (sel) => document.querySelector(sel)?.textContent ?? null;
        const counts = {};
        for (const name of ["pending", "completed", "failed"]) {
            counts[name] = text(`[data-counter="${name}"]`);
        }
        // Leased POs: on a worker (RUNNING) or claimed ahead (CLAIMED, queued on host).
        counts.running = ["RUNNING", "CLAIMED"].reduce((n, status) =>
            n + Number(text(`#by-status li[data-status="${status}"] b`) ?? 0), 0);
        counts.done = text("#progress-done");
        counts.total = text("#progress-total");
        return Object.fromEntries(
            Object.entries(counts).map(([k, v]) => [k, v === null ? null : Number(v)]));
    }""")


def _db_counts(deploy: Deployment) -> dict[str, int]:
    rows = dict(deploy.query("SELECT status, COUNT(*) FROM batches_purchaseorder "
                             "GROUP BY status"))
    pending = rows.get("QUEUED", 0) + rows.get("RUNNING", 0)
    completed = sum(rows.get(s, 0) for s in ("COMPLETED", "PARTIAL", "NO_ATTACHMENTS"))
    total = sum(rows.values())
    failed = total - pending - completed - rows.get("CANCELLED", 0)
    return {"pending": pending, "running": rows.get("RUNNING", 0), "completed": completed,
            "failed": failed, "done": total - pending, "total": total}
