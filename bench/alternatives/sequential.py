"""(a) The script a user writes first: one browser, one context, one PO after another.

For each PO: open the page, download every file one after another, check and hash
each, save a PDF of the page. On the coupa shape that means what `po_files` describes
(wait for the comments, click the header spans with the button bar hidden, fetch the
comments' links with the session, the requisition when the PO has no files); on the
simple shape every file is a link clicked under `expect_download`. A failed PO is
recorded and the loop goes on; nothing relaunches the browser, so if it dies every
later PO fails.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from playwright.sync_api import BrowserContext, Download, Page, sync_playwright

from bench.alternatives.po_files import (
    ATTACHMENT_SELECTOR,
    COMMENT_LINKS,
    COMMENTS_RENDERED,
    HEADER_SPANS,
    HIDE_BAR_CSS,
    PAGE_PDF,
    REQUISITION_LINK,
    STEP_TIMEOUT_MS,
    POReport,
    batch_load,
    body_save,
    browser_args,
    file_check,
    po_folder,
    report_write,
    response_name,
    runner_arguments,
    safe_name,
    unique_target,
)


class DownloadCatcher:
    """Every download of the context, from the PO's page or from a window it opened.

    A header span's script either navigates the page to its file or opens a window for
    it, and nothing on the page says which: listening on every page covers both.
    """

    def __init__(self, context: BrowserContext) -> None:
        self.arrived: list[Download] = []
        context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        page.on("download", self.arrive)

    def arrive(self, download: Download) -> None:
        self.arrived.append(download)

    def click_and_catch(self, page: Page, index: int) -> Download:
        """Click the index-th header span and wait for the download it starts."""
        before = len(self.arrived)
        page.locator(HEADER_SPANS).nth(index).click(timeout=STEP_TIMEOUT_MS)
        deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
        while len(self.arrived) == before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"header attachment {index + 1}: no download started")
            page.wait_for_timeout(50)  # lets Playwright deliver the download event
        for other in page.context.pages:  # the window a span opened for its file
            if other is not page:
                other.close()
        return self.arrived[before]


def coupa_listing(page: Page) -> tuple[int, list[str]]:
    """Wait for the comments, hide the button bar; the header spans and comment links."""
    page.wait_for_selector(COMMENTS_RENDERED, timeout=STEP_TIMEOUT_MS)
    page.add_style_tag(content=HIDE_BAR_CSS)
    hrefs = page.locator(COMMENT_LINKS).evaluate_all("els => els.map(a => a.href)")
    return page.locator(HEADER_SPANS).count(), [str(h) for h in hrefs]


def coupa_files(page: Page, catcher: DownloadCatcher, folder: Path) -> list[dict[str, Any]]:
    """Print the PO page, then download its files (or its requisition's) one by one."""
    spans, hrefs = coupa_listing(page)
    page.pdf(path=folder / PAGE_PDF)
    if not spans and not hrefs:  # the files of such a PO are on its requisition
        link = page.locator(REQUISITION_LINK)
        if link.count():
            href = urljoin(page.url, link.get_attribute("href") or "")
            response = page.goto(href, timeout=STEP_TIMEOUT_MS)
            if response is None or response.status >= 400:
                raise RuntimeError(f"requisition: HTTP {response.status if response else '-'}")
            spans, hrefs = coupa_listing(page)
    files = []
    for index in range(spans):
        download = catcher.click_and_catch(page, index)
        target = unique_target(folder, safe_name(download.suggested_filename))
        download.save_as(target)
        files.append(file_check(target))
    for href in hrefs:
        answer = page.context.request.get(href, timeout=STEP_TIMEOUT_MS)
        if not answer.ok:
            raise RuntimeError(f"{href}: HTTP {answer.status}")
        files.append(body_save(folder, response_name(answer.headers, href), answer.body()))
    return files


def simple_files(page: Page, folder: Path) -> list[dict[str, Any]]:
    """Click each attachment link and wait for its download; then print the page."""
    files = []
    links = page.locator(ATTACHMENT_SELECTOR)
    for index in range(links.count()):
        with page.expect_download(timeout=STEP_TIMEOUT_MS) as info:
            links.nth(index).click(timeout=STEP_TIMEOUT_MS)
        download = info.value
        target = folder / safe_name(download.suggested_filename)
        download.save_as(target)
        files.append(file_check(target))
    page.pdf(path=folder / PAGE_PDF)
    return files


def po_process(page: Page, catcher: DownloadCatcher, po: dict[str, Any], out_root: Path,
               shape: str) -> POReport:
    """Open one PO, download and check its files, print the page to PDF."""
    started = time.monotonic()
    report = POReport(po["po_number"], "failed")
    try:
        response = page.goto(po["url"], timeout=STEP_TIMEOUT_MS)
        if response is None or response.status >= 400:
            raise RuntimeError(f"HTTP {response.status if response else 'no response'}")
        folder = po_folder(out_root, po["po_number"])
        if shape == "coupa":
            report.files.extend(coupa_files(page, catcher, folder))
        else:
            report.files.extend(simple_files(page, folder))
        report.status = "ok"
    except Exception as exc:  # one PO's failure must not end the batch
        report.error = f"{type(exc).__name__}: {exc}"[:300]
    report.seconds = time.monotonic() - started
    return report


def main() -> None:
    args = runner_arguments(__doc__ or "")
    started = time.monotonic()
    batch = batch_load(args.batch)
    storage_state = json.loads(args.storage_state.read_text())
    reports: list[POReport] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=args.browser, args=browser_args(), headless=True)
        context = browser.new_context(storage_state=storage_state, accept_downloads=True)
        catcher = DownloadCatcher(context)
        page = context.new_page()
        for po in batch:
            reports.append(po_process(page, catcher, po, args.out, args.shape))
        try:
            browser.close()
        finally:
            report_write(args.report, reports, started)


if __name__ == "__main__":
    main()
