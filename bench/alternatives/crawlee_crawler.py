"""(b) Crawlee for Python's PlaywrightCrawler doing the same job at a fixed concurrency.

Crawlee's defaults, except where they would change the job or reach the internet:
one browser shared by all pages (a persistent context, Crawlee's default), the
distribution's chromium-headless-shell with poolsite's flags but popups allowed
(`po_files.browser_args`), the demo session cookie added to that context, no
fingerprint generator, in-memory storage (no ./storage), and min = desired = max
concurrency so the autoscaler cannot wander on a shared machine. Crawlee's own retries
(3) and handler timeout stay at their defaults.

The handler does the sequential script's job per page (see `po_files` for the coupa
shape): files one after another, or with `--parallel-downloads` the comments' files
fetched at once beside the header clicks and the page PDF, as poolsite overlaps them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from crawlee import ConcurrencySettings, Request
from crawlee.crawlers import (
    PlaywrightCrawler,
    PlaywrightCrawlingContext,
    PlaywrightPreNavCrawlingContext,
)
from crawlee.storage_clients import MemoryStorageClient
from playwright.async_api import Download, Page

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


def crawler_build(browser: str, concurrency: int) -> PlaywrightCrawler:
    """A PlaywrightCrawler on our browser binary, pinned at `concurrency` pages."""
    return PlaywrightCrawler(
        browser_type="chromium",
        headless=True,
        browser_launch_options={"executable_path": browser, "args": browser_args(),
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


async def downloads_one_by_one(page: Page, folder: Path) -> list[dict[str, Any]]:
    """Click each attachment link and wait for its download, as the sequential script does."""
    files = []
    links = page.locator(ATTACHMENT_SELECTOR)
    for index in range(await links.count()):
        async with page.expect_download(timeout=STEP_TIMEOUT_MS) as info:
            await links.nth(index).click(timeout=STEP_TIMEOUT_MS)
        download = await info.value
        target = folder / safe_name(download.suggested_filename)
        await download.save_as(target)
        files.append(file_check(target))
    return files


async def downloads_parallel(page: Page, folder: Path) -> list[dict[str, Any]]:
    """Start every attachment's download at once (as poolsite does), then save them all."""
    arrived: list[Download] = []

    def on_download(download: Download) -> None:
        arrived.append(download)

    page.on("download", on_download)
    links = page.locator(ATTACHMENT_SELECTOR)
    # With a download attribute a click starts a download without navigating, so the
    # next click does not cancel the previous one while its response is still pending.
    count = await links.evaluate_all("els => els.map(a => a.setAttribute('download', '')).length")
    for index in range(count):
        await links.nth(index).click(timeout=STEP_TIMEOUT_MS)
    async with asyncio.timeout(STEP_TIMEOUT_MS / 1000):
        while len(arrived) < count:
            await asyncio.sleep(0.05)

    async def save(download: Download) -> dict[str, Any]:
        target = folder / safe_name(download.suggested_filename)
        await download.save_as(target)
        return file_check(target)

    return list(await asyncio.gather(*(save(d) for d in arrived)))


class DownloadCatcher:
    """Every download of one PO's page, or of a window its scripts open.

    A header span's script either navigates the page to its file or opens a window for
    it, and nothing on the page says which: listening on the page and its popups covers
    both. (All pages share one context here, so not the context's "page" event.)
    """

    def __init__(self, page: Page) -> None:
        self.page = page
        self.arrived: list[Download] = []
        self.popups: list[Page] = []
        page.on("download", self.arrive)
        page.on("popup", self.popup)

    def arrive(self, download: Download) -> None:
        self.arrived.append(download)

    def popup(self, popup: Page) -> None:
        self.popups.append(popup)
        popup.on("download", self.arrive)

    async def click_and_catch(self, index: int) -> Download:
        """Click the index-th header span and wait for the download it starts."""
        before = len(self.arrived)
        await self.page.locator(HEADER_SPANS).nth(index).click(timeout=STEP_TIMEOUT_MS)
        async with asyncio.timeout(STEP_TIMEOUT_MS / 1000):
            while len(self.arrived) == before:
                await asyncio.sleep(0.05)
        while self.popups:  # the window a span opened for its file
            await self.popups.pop().close()
        return self.arrived[before]


async def coupa_listing(page: Page) -> tuple[int, list[str]]:
    """Wait for the comments, hide the button bar; the header spans and comment links."""
    await page.wait_for_selector(COMMENTS_RENDERED, timeout=STEP_TIMEOUT_MS)
    await page.add_style_tag(content=HIDE_BAR_CSS)
    hrefs = await page.locator(COMMENT_LINKS).evaluate_all("els => els.map(a => a.href)")
    return await page.locator(HEADER_SPANS).count(), [str(h) for h in hrefs]


async def header_downloads(catcher: DownloadCatcher, spans: int,
                           folder: Path) -> list[dict[str, Any]]:
    """Click the spans one at a time: a second navigation would cancel the first."""
    files = []
    for index in range(spans):
        download = await catcher.click_and_catch(index)
        target = unique_target(folder, safe_name(download.suggested_filename))
        await download.save_as(target)
        files.append(file_check(target))
    return files


async def comment_file(page: Page, href: str, folder: Path) -> dict[str, Any]:
    """Fetch one comment's file with the browser's session (its cookies)."""
    answer = await page.context.request.get(href, timeout=STEP_TIMEOUT_MS)
    if not answer.ok:
        raise RuntimeError(f"{href}: HTTP {answer.status}")
    return body_save(folder, response_name(answer.headers, href), await answer.body())


async def coupa_files(page: Page, folder: Path, parallel: bool) -> list[dict[str, Any]]:
    """The PO page's files (or its requisition's) and the PO page as PDF."""
    catcher = DownloadCatcher(page)
    spans, hrefs = await coupa_listing(page)
    printed = False
    if not spans and not hrefs:  # the files of such a PO are on its requisition
        await page.pdf(path=folder / PAGE_PDF)  # the PO page, before leaving it
        printed = True
        link = page.locator(REQUISITION_LINK)
        if await link.count():
            href = urljoin(page.url, await link.get_attribute("href") or "")
            response = await page.goto(href, timeout=STEP_TIMEOUT_MS)
            if response is None or response.status >= 400:
                raise RuntimeError(f"requisition: HTTP {response.status if response else '-'}")
            spans, hrefs = await coupa_listing(page)
    if parallel:
        jobs: list[Any] = [header_downloads(catcher, spans, folder)]
        jobs += [comment_file(page, href, folder) for href in hrefs]
        if not printed:
            jobs.append(page.pdf(path=folder / PAGE_PDF))
        done = await asyncio.gather(*jobs)
        return [*done[0], *done[1:1 + len(hrefs)]]
    if not printed:
        await page.pdf(path=folder / PAGE_PDF)
    files = await header_downloads(catcher, spans, folder)
    for href in hrefs:
        files.append(await comment_file(page, href, folder))
    return files


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
        folder = po_folder(out_root, po_number)
        if args.shape == "coupa":
            files = await coupa_files(context.page, folder, args.parallel_downloads)
        elif args.parallel_downloads:  # and print the page meanwhile, as poolsite does
            files, _ = await asyncio.gather(downloads_parallel(context.page, folder),
                                            context.page.pdf(path=folder / PAGE_PDF))
        else:
            files = await downloads_one_by_one(context.page, folder)
            await context.page.pdf(path=folder / PAGE_PDF)
        report.files.extend(files)
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
