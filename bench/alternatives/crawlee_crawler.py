"""(b) Crawlee for Python's PlaywrightCrawler doing the same job at a fixed concurrency.

Crawlee's defaults, except where they would change the job or reach the internet:
one browser shared by all pages (a persistent context, Crawlee's default), the
distribution's chromium-headless-shell with poolsite's flags, the demo session cookie
added to that context, no fingerprint generator, in-memory storage (no ./storage),
and min = desired = max concurrency so the autoscaler cannot wander on a shared
machine. Crawlee's own retries (3) and handler timeout stay at their defaults.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from crawlee import ConcurrencySettings, Request
from crawlee.crawlers import (
    PlaywrightCrawler,
    PlaywrightCrawlingContext,
    PlaywrightPreNavCrawlingContext,
)
from crawlee.storage_clients import MemoryStorageClient

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


def crawler_build(browser: str, concurrency: int) -> PlaywrightCrawler:
    """A PlaywrightCrawler on our browser binary, pinned at `concurrency` pages."""
    return PlaywrightCrawler(
        browser_type="chromium",
        headless=True,
        browser_launch_options={"executable_path": browser, "args": launch_args(),
                                "headless": True},
        browser_new_context_options={"accept_downloads": True},
        fingerprint_generator=None,
        storage_client=MemoryStorageClient(),
        configure_logging=False,
        concurrency_settings=ConcurrencySettings(
            min_concurrency=concurrency, desired_concurrency=concurrency,
            max_concurrency=concurrency),
        navigation_timeout=timedelta(milliseconds=STEP_TIMEOUT_MS),
    )


async def crawl(args: Any, started: float) -> None:
    batch = batch_load(args.batch)
    cookies = json.loads(Path(args.storage_state).read_text())["cookies"]
    out_root: Path = args.out
    reports: dict[str, POReport] = {}
    crawler = crawler_build(args.browser, args.concurrency)

    @crawler.pre_navigation_hook
    async def sign_in(context: PlaywrightPreNavCrawlingContext) -> None:
        # Crawlee has no storage_state option for its persistent context: add the cookie.
        await context.page.context.add_cookies(cookies)

    @crawler.router.default_handler
    async def po_handle(context: PlaywrightCrawlingContext) -> None:
        po_number = str(context.request.user_data["po_number"])
        report = POReport(po_number, "failed")
        begun = time.monotonic()
        if context.response.status >= 400:
            raise RuntimeError(f"HTTP {context.response.status}")
        page = context.page
        folder = po_folder(out_root, po_number)
        links = page.locator(ATTACHMENT_SELECTOR)
        for index in range(await links.count()):
            async with page.expect_download(timeout=STEP_TIMEOUT_MS) as info:
                await links.nth(index).click(timeout=STEP_TIMEOUT_MS)
            download = await info.value
            target = folder / safe_name(download.suggested_filename)
            await download.save_as(target)
            report.files.append(file_check(target))
        await page.pdf(path=folder / PAGE_PDF)
        report.status = "ok"
        report.seconds = time.monotonic() - begun
        reports[po_number] = report

    @crawler.failed_request_handler
    async def po_failed(context: Any, error: Exception) -> None:
        po_number = str(context.request.user_data["po_number"])
        reports[po_number] = POReport(po_number, "failed", error=f"{type(error).__name__}: "
                                      f"{error}"[:300])

    requests = [Request.from_url(po["url"], user_data={"po_number": po["po_number"]})
                for po in batch]
    extra: dict[str, Any] = {}
    try:
        stats = await crawler.run(requests)
        extra = {"retries": stats.retry_histogram, "requests_failed": stats.requests_failed}
    finally:  # a crashed crawl still says which POs it finished or gave up on
        report_write(args.report, list(reports.values()), started, **extra)


def main() -> None:
    args = runner_arguments(__doc__ or "")
    started = time.monotonic()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(crawl(args, started))


if __name__ == "__main__":
    main()
