"""A Coupa user's batch, end to end: their workbook, their tenant, real workers, real pages.

    this test ─ Playwright ─▶ Chromium ─▶ runpool (daphne + supervisor) ─▶ 4 workers
                                                                          └▶ demo site
                                                                             (Coupa shape)

The operator adds the tenant on the Sites page, uploads the workbook users of the
replaced tool have (a `PO_Data` sheet with nothing but `PO_NUMBER`, beside other sheets),
presses Start, and every PO ends as the site's ground truth says, with byte-identical
files. A second run has the site sign the workers out part-way: the pool pauses with
LOGIN_REQUIRED and no PO failed; a new session and Resume finish the batch right.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pool_core.browser import launch_args
from pool_core.names import safe_filename
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import Deployment, deployment, serving_runpool, wait_for

PASSWORD = "e2e-password-5678"
LONG = 240  # s: 4 workers start Chromium on a shared 2-core machine
# Every special that finishes by itself but STALL_ONCE (its first download waits out
# the 60 s download timeout; tests/pool_core covers it), then normal POs: 44 in all.
POS = [n for n in catalog.coupa_batch(45) if n != catalog.STALL_ONCE]
TENANT = "Acme tenant"

pytestmark = pytest.mark.timeout(900)

MAKE_OPERATOR = f"""
from django.contrib.auth.models import Group, User
User.objects.create_user("otto", password={PASSWORD!r}).groups.add(
    Group.objects.get(name="operators"))
"""


@pytest.fixture
def live(site: DemoSite, tmp_path: Path) -> Iterator[tuple[Deployment, str]]:
    deploy = deployment(tmp_path, site)
    deploy.manage("shell", "-c", MAKE_OPERATOR)
    # No --storage-state: the workers use the site session saved in the app.
    with serving_runpool(deploy, "--pool-size", "4") as url:
        yield deploy, url


def sign_in(browser: Browser, url: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000},
                               accept_downloads=True).new_page()
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{url}/")
    page.fill("input[name=username]", "otto")
    page.fill("input[name=password]", PASSWORD)
    page.locator("input[name=password]").press("Enter")
    expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
    return page


def add_tenant(page: Page, url: str, site: DemoSite) -> None:
    page.goto(f"{url}/sites/add/")
    page.fill("input[name=name]", TENANT)
    page.select_option("select[name=preset]", "demo")
    page.fill("input[name=base_url]", site.base_url)
    page.click("button[type=submit]")
    expect(page.locator("body")).to_contain_text(TENANT)


def give_session(deploy: Deployment, site: DemoSite) -> int:
    """Capture a signed-in session the way an operator would, into the app's store.

    Returns the third-party hits the capture's browser made: it is the operator's
    sign-in browser, which loads the tenant's pages as they are; the workers never may.
    """
    before = site.third_party_hits
    deploy.manage("capture_session", "--site", "demo", "--url", site.signin_url(),
                  "--base-url", site.base_url,
                  "--headless", "--wait", "60", timeout=180)
    return site.third_party_hits - before


def workbook(folder: Path, numbers: list[str]) -> Path:
    book = openpyxl.Workbook()
    cover = book.active
    assert cover is not None
    cover.title = "Read me"
    cover["A1"] = "Weekly PO export (the PO_Data sheet lists the orders)"
    data = book.create_sheet("PO_Data")
    data.append(["PO_NUMBER"])
    for number in numbers:
        data.append([number])
    path = folder / "weekly-pos.xlsx"
    book.save(path)
    return path


def upload(page: Page, url: str, path: Path) -> None:
    page.goto(f"{url}/batches/upload/")
    page.set_input_files("input[name=file]", str(path))
    page.select_option("select[name=site]", TENANT)  # the option's value is the name
    page.click("button[type=submit]")
    page.click("text=Create the batch")


def start(page: Page, url: str) -> None:
    page.goto(f"{url}/")
    expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
    page.fill("#scale-size", "4")
    page.click('button[data-action="scale"]')
    expect(page.locator("#plan-size")).to_have_text("4")
    page.click('button[data-action="start"]')
    expect(page.locator("#plan-state")).to_have_text("running")


def finished(deploy: Deployment) -> bool:
    return not deploy.query("SELECT 1 FROM batches_purchaseorder "
                            "WHERE status IN ('QUEUED', 'RUNNING')")


def assert_every_po_right(deploy: Deployment, numbers: list[str]) -> None:
    rows = {number: (status, reason, folder) for number, status, reason, folder in deploy.query(
        "SELECT po_number, status, reason, output_folder FROM batches_purchaseorder")}
    assert sorted(rows) == sorted(numbers)
    wrong = {}
    for number in numbers:
        truth = catalog.expected(number)
        status, reason, folder = rows[number]
        if (status, reason) != (truth.status, truth.reason):
            wrong[number] = ((status, reason), (truth.status, truth.reason))
            continue
        saved = {name: sha for name, sha in deploy.query(
            "SELECT d.name, d.sha256 FROM batches_document d JOIN batches_purchaseorder p "
            "ON d.po_id = p.id WHERE p.po_number = ? AND d.source IN ('po', 'requisition')",
            number)}
        assert saved == {safe_filename(a.name): a.sha256 for a in truth.attachments}, number
        for name, sha in saved.items():  # byte-identical on disk
            body = (deploy.output_dir / folder / name).read_bytes()
            assert hashlib.sha256(body).hexdigest() == sha, (number, name)
    assert not wrong, wrong


def test_a_po_data_workbook_on_the_coupa_shaped_site_ends_as_the_ground_truth_says(
        live: tuple[Deployment, str], site: DemoSite, browser_path: str,
        tmp_path: Path) -> None:
    deploy, url = live
    by_capture = give_session(deploy, site)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            page = sign_in(browser, url)
            add_tenant(page, url, site)
            upload(page, url, workbook(tmp_path, POS))
            start(page, url)
            wait_for(lambda: finished(deploy), LONG, "the batch to finish")
            expect(page.locator("#plan-state")).to_have_text("idle", timeout=60_000)

            assert_every_po_right(deploy, POS)
            assert site.third_party_hits == by_capture and site.canary_hits == 0
            assert site.identity_hits == 0  # the workers were never walled

            # The operator's own workbook comes back with the status beside each row.
            (batch_id,) = deploy.query("SELECT id FROM batches_batch")[0]
            with page.expect_download() as info:
                page.goto(f"{url}/batches/{batch_id}/")
                page.click("text=Results in your workbook")
            returned = openpyxl.load_workbook(io.BytesIO(Path(info.value.path()).read_bytes()))
        finally:
            browser.close()
    assert returned.sheetnames == ["Read me", "PO_Data"]
    rows = list(returned["PO_Data"].iter_rows(values_only=True))
    header = list(rows[0])
    assert header[0] == "PO_NUMBER" and "poolsite_status" in header
    status_at = header.index("poolsite_status")
    assert {row[0]: row[status_at] for row in rows[1:]} == {
        number: catalog.expected(number).status for number in POS}


def test_a_session_revoked_mid_batch_pauses_the_pool_and_resume_finishes_it_right(
        live: tuple[Deployment, str], site: DemoSite, browser_path: str,
        tmp_path: Path) -> None:
    deploy, url = live
    numbers = [f"PO{n}" for n in range(200100, 200124)]
    by_capture = give_session(deploy, site)
    site.latency = 0.2
    site.revoke_after = 8  # the site signs every session out after its 8th PO page
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            page = sign_in(browser, url)
            add_tenant(page, url, site)
            upload(page, url, workbook(tmp_path, numbers))
            start(page, url)
            expect(page.locator("#pool-state")).to_have_text("paused", timeout=LONG * 1000)
            expect(page.locator("p.login-required")).to_be_visible()
            wait_for(lambda: not deploy.query(
                "SELECT 1 FROM batches_purchaseorder WHERE status = 'RUNNING'"), 60,
                "the POs in flight to come back")
            statuses = {s for (s,) in deploy.query(
                "SELECT DISTINCT status FROM batches_purchaseorder")}
            assert statuses <= {"QUEUED", "COMPLETED"}, statuses  # none failed
            assert "QUEUED" in statuses
            (reason,) = deploy.query("SELECT reason FROM supervisor_poolplan")[0]
            assert reason.startswith("LOGIN_REQUIRED"), reason

            site.latency = 0.0
            by_capture += give_session(deploy, site)  # the operator captures a new one...
            page.goto(f"{url}/")
            expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
            page.click('button[data-action="resume"]')  # ...and resumes
            wait_for(lambda: finished(deploy), LONG, "the batch to finish")
        finally:
            browser.close()
    assert_every_po_right(deploy, numbers)
    assert site.third_party_hits == by_capture and site.canary_hits == 0
