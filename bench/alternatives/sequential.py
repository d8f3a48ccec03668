"""(a) The script a user writes first: one browser, one context, one PO after another.

For each PO: open the page, download every attachment with `expect_download`, check
and hash it, save a PDF of the page. A failed PO is recorded and the loop goes on;
nothing relaunches the browser, so if it dies every later PO fails.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from bench.alternatives.po_files import (
    ATTACHMENT_SELECTOR,
    PAGE_PDF,
    STEP_TIMEOUT_MS,
    POReport,
    batch_load,
    file_check,
    po_folder,
    report_write,
    runner_arguments,
    safe_name,
)
from pool_core.browser import launch_args


def po_process(page: Page, po: dict[str, Any], out_root: Path) -> POReport:
    """Open one PO, download and check its attachments, print the page to PDF."""
    started = time.monotonic()
    report = POReport(po["po_number"], "failed")
    try:
        response = page.goto(po["url"], timeout=STEP_TIMEOUT_MS)
        if response is None or response.status >= 400:
            raise RuntimeError(f"HTTP {response.status if response else 'no response'}")
        folder = po_folder(out_root, po["po_number"])
        links = page.locator(ATTACHMENT_SELECTOR)
        for index in range(links.count()):
            with page.expect_download(timeout=STEP_TIMEOUT_MS) as info:
                links.nth(index).click(timeout=STEP_TIMEOUT_MS)
            download = info.value
            target = folder / safe_name(download.suggested_filename)
            download.save_as(target)
            report.files.append(file_check(target))
        page.pdf(path=folder / PAGE_PDF)
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
            executable_path=args.browser, args=launch_args(), headless=True)
        context = browser.new_context(storage_state=storage_state, accept_downloads=True)
        page = context.new_page()
        for po in batch:
            reports.append(po_process(page, po, args.out))
        try:
            browser.close()
        finally:
            report_write(args.report, reports, started)


if __name__ == "__main__":
    main()
