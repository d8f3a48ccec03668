"""process_po on pages shaped like real Coupa pages, in real Chromium.

The demo site's "coupa" shape carries what broke the product on a real tenant:
third-party scripts from other hosts, click-only header attachments under a floating
button bar, comments rendered after `load` with inline PDFs behind `target=_blank`,
requisitions with their own ids, and sign-in on a separate identity host. Each rule
the engine follows there has a test here that fails without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from pool_core.config import JobEnv
from pool_core.messages import POStatus, Task, TaskResult
from pool_core.names import safe_filename
from pool_core.po_folder import MANIFEST_NAME
from pool_core.processing import process_po
from pool_core.sites import load_preset
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.presets import quick_render

DOWNLOAD_TIMEOUT_S = 5.0
ATTACHMENT_SOURCES = ("po", "requisition")
FINISHING = [n for n in catalog.COUPA_FINISHING if n != catalog.RATE_LIMITED
             and n != catalog.STALL_ONCE]  # those take two calls; tested elsewhere
NORMAL = [f"PO{n}" for n in range(200000, 200008)]


@pytest.fixture(scope="module")
def browser(browser_path: str, worker_args: list[str]) -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=worker_args)
        yield browser
        browser.close()


@pytest.fixture
def job(coupa_site: DemoSite, tmp_path: Path) -> JobEnv:
    return JobEnv(worker_id=1, output_root=str(tmp_path / "out"),
                  work_root=str(tmp_path / "work"), evidence_dir=str(tmp_path / "evidence"),
                  site=quick_render(load_preset("demo").with_base_url(coupa_site.base_url)),
                  nav_timeout_s=10.0, download_timeout_s=DOWNLOAD_TIMEOUT_S)


@pytest.fixture
def page(browser: Browser, coupa_site: DemoSite) -> Iterator[Page]:
    """A signed-in page, as a worker hands it to the job."""
    context = browser.new_context(storage_state=coupa_site.storage_state(),  # type: ignore[arg-type]
                                  accept_downloads=True)
    yield context.new_page()
    context.close()


def run(page: Page, site: DemoSite, number: str, job: JobEnv, attempt: int = 1,
        supplier: str = "") -> TaskResult:
    task = Task(key=number, po_number=number, supplier=supplier, amount=Decimal("1"),
                url=f"{site.base_url}/order_headers/{catalog.digits_of(number)}",
                batch="batch 1", attempt=attempt)
    return process_po(page, task, job)


def assert_ground_truth(result: TaskResult, job: JobEnv) -> None:
    truth = catalog.expected(result.po_number, shape="coupa")
    assert (result.status, result.reason) == (truth.status, truth.reason), result.message
    files = [f for f in result.files if f.source in ATTACHMENT_SOURCES]
    assert sorted(f.sha256 for f in files) == sorted(a.sha256 for a in truth.attachments)
    # Saved under the site's suggested names, made safe (PO100013's are hostile).
    assert sorted(f.name for f in files) == sorted(
        safe_filename(a.name) for a in truth.attachments)
    assert sorted(f.name for f in files if f.warning) == sorted(
        safe_filename(n) for n in truth.warnings)
    root = Path(job.output_root)
    if not POStatus(truth.status).is_success:
        assert not result.files and not any(p.is_file() for p in root.rglob("*"))
        return
    folder = root / result.folder
    for record in result.files:
        body = (folder / record.name).read_bytes()
        assert hashlib.sha256(body).hexdigest() == record.sha256


@pytest.mark.parametrize("number", FINISHING + NORMAL)
def test_every_coupa_po_ends_as_the_ground_truth_says(
        number: str, page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, number, job)
    assert_ground_truth(result, job)
    assert coupa_site.third_party_hits == 0 and coupa_site.canary_hits == 0


def test_third_party_scripts_off_the_list_are_aborted_and_the_po_is_still_right(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    # Before: the first analytics script failed the PO as BLOCKED_URL.
    result = run(page, coupa_site, catalog.SEVERAL, job)
    assert result.status == POStatus.COMPLETED, result.message
    hosts = {url.split("/")[2].split(":")[0] for url in result.blocked_requests}
    assert {"127.0.0.3", "127.0.0.4"} <= hosts
    assert coupa_site.third_party_hits == 0  # aborted, never fetched
    manifest = json.loads((Path(job.output_root) / result.folder / MANIFEST_NAME).read_text())
    assert manifest["subrequests_blocked"] >= 2


def test_a_comments_app_that_never_renders_is_layout_unknown_not_no_attachments(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    first = run(page, coupa_site, catalog.COMMENTS_NEVER_RENDER, job, attempt=1)
    assert (first.status, first.reason, first.retryable) == (
        POStatus.FAILED, "LAYOUT_UNKNOWN", True)  # tried once more
    assert "comments" in first.message and first.evidence
    seen = {(s.name, s.seen) for s in first.sources}
    assert ("comments", False) in seen and ("header", True) in seen
    second = run(page, coupa_site, catalog.COMMENTS_NEVER_RENDER, job, attempt=2)
    assert (second.status, second.reason, second.retryable) == (
        POStatus.FAILED, "LAYOUT_UNKNOWN", False)


def test_no_attachments_rests_on_every_source_seen_empty(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, catalog.NO_ATTACHMENTS, job)
    assert result.status == POStatus.NO_ATTACHMENTS, result.message
    assert {(s.page, s.name, s.seen, s.files) for s in result.sources} == {
        ("po", "header", True, 0), ("po", "comments", True, 0),
        ("requisition", "header", True, 0), ("requisition", "comments", True, 0)}
    manifest = json.loads((Path(job.output_root) / result.folder / MANIFEST_NAME).read_text())
    assert len(manifest["sources"]) == 4 and all(s["seen"] for s in manifest["sources"])


def test_click_only_spans_under_the_floating_bar_are_downloaded(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    # One span downloads in the same tab, the other opens a window for its file.
    result = run(page, coupa_site, catalog.HEADER_ONLY, job)
    assert_ground_truth(result, job)
    assert {f.place for f in result.files if f.source == "po"} == {"header"}


def test_a_span_is_still_downloaded_when_the_preset_names_no_overlay(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    assert job.site is not None
    bare = dataclasses.replace(job, site=dataclasses.replace(job.site, overlay_selectors=()))
    result = run(page, coupa_site, catalog.HEADER_ONLY, bare)
    assert_ground_truth(result, bare)  # the bar intercepts the pointer: a DOM click


def test_comments_rendered_late_are_waited_for_and_downloaded(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    coupa_site.comments_delay = 2.5
    result = run(page, coupa_site, catalog.COMMENTS_ONLY, job)
    assert_ground_truth(result, job)
    assert {f.place for f in result.files if f.source == "po"} == {"comments"}
    assert any(f.name.endswith(".pdf") for f in result.files if f.place == "comments")


def test_a_file_whose_bytes_do_not_match_its_name_is_kept_and_flagged(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, catalog.TYPE_MISMATCH, job)
    assert_ground_truth(result, job)
    flagged = [f for f in result.files if f.warning]
    assert [f.name for f in flagged] == ["scanned-invoice.pdf"]
    assert "warning" in result.message
    manifest = json.loads((Path(job.output_root) / result.folder / MANIFEST_NAME).read_text())
    assert [f["name"] for f in manifest["files"] if f["warning"]] == ["scanned-invoice.pdf"]


def test_the_supplier_shown_on_the_page_names_the_folder_when_the_row_has_none(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, catalog.ONE_PDF, job)
    po = catalog.find(catalog.ONE_PDF, shape="coupa")
    assert po is not None and result.supplier_seen == po.supplier
    assert Path(result.folder).parts[1] != "Unknown supplier"
    assert po.supplier.split()[0] in Path(result.folder).parts[1]


def test_an_expired_session_sent_to_the_identity_host_is_login_required(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    # Before: the redirect to the identity host failed the PO as BLOCKED_URL.
    coupa_site.expire_sessions()
    result = run(page, coupa_site, catalog.ONE_PDF, job)
    assert (result.status, result.reason) == (POStatus.LOGIN_REQUIRED, "LOGIN_REQUIRED")
    assert "127.0.0.5" in result.message
    assert coupa_site.identity_hits == 0  # refused in the browser, never fetched


def test_a_session_revoked_during_the_po_is_login_required_not_a_layout_failure(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    # The site signs out right after serving the PO page: its comments request and
    # every download go to the identity host.
    coupa_site.revoke_after = 1
    result = run(page, coupa_site, catalog.SEVERAL, job)
    assert (result.status, result.reason) == (POStatus.LOGIN_REQUIRED, "LOGIN_REQUIRED"), (
        result.message)
    assert not any(p.is_file() for p in Path(job.output_root).rglob("*"))


def test_a_po_redirected_to_a_foreign_host_is_blocked_while_the_session_is_fine(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, catalog.REDIRECT_OUT, job)
    assert (result.status, result.reason, result.retryable) == (
        POStatus.FAILED, "BLOCKED_URL", False)
    assert coupa_site.canary_host in result.message and coupa_site.canary_hits == 0


def test_the_requisition_fallback_follows_the_requisitions_own_id(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, catalog.REQUISITION_ONLY, job)
    assert_ground_truth(result, job)
    assert {f.source for f in result.files if f.source in ATTACHMENT_SOURCES} == {
        "requisition"}
    po = catalog.find(catalog.REQUISITION_ONLY, shape="coupa")
    assert po is not None
    requisition = catalog.coupa_requisition_id(po)
    assert requisition != po.digits
    assert coupa_site.hits(f"/requisition_headers/{requisition}") == 2  # page, comments


def test_the_preset_can_look_at_the_requisition_when_the_po_has_no_pdf(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    assert job.site is not None
    number = "PO200005"  # an .xlsx and a .txt, no PDF
    plain = run(page, coupa_site, number, job)
    assert {s.page for s in plain.sources} == {"po"}  # files on the PO: no fallback
    eager = dataclasses.replace(job, site=dataclasses.replace(
        job.site, requisition_when_no_pdf=True), output_root=job.output_root + "-2")
    result = run(page, coupa_site, number, eager)
    assert_ground_truth(result, eager)  # the requisition has none: the PO's own files
    assert {(s.page, s.seen) for s in result.sources} == {("po", True), ("requisition", True)}


def test_an_outlook_message_is_kept_with_a_pdf_of_its_text_beside_it(
        page: Page, coupa_site: DemoSite, job: JobEnv) -> None:
    result = run(page, coupa_site, "PO200002", job)  # notes.txt and approval.msg
    assert_ground_truth(result, job)
    (message,) = [f for f in result.files if f.name.endswith(".msg")]
    (printed,) = [f for f in result.files if f.source == "message-pdf"]
    assert printed.name == f"{message.name}.pdf" and printed.place == message.place
    body = (Path(job.output_root) / printed.path).read_bytes()
    assert body.startswith(b"%PDF-") and hashlib.sha256(body).hexdigest() == printed.sha256
    manifest = json.loads((Path(job.output_root) / result.folder / MANIFEST_NAME).read_text())
    assert printed.name in {f["name"] for f in manifest["files"]}
