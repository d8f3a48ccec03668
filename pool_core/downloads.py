"""Real browser downloads of a page's attachments, all at once, each with a deadline.

    batch = open_batch(page)       listen for this page's downloads
    start_downloads(page, batch, links)
                                   click the elements that have no href, one at a time,
                                   then open every href in its own hidden, sandboxed
                                   iframe; called again for files that render later
    finish_downloads(...)          wait for each until its deadline, save it to the
                                   work folder, or cancel it and say why
    batch.stop_listening(page)     before the page serves the next PO

Downloads run in parallel (the site's latency is paid once, not once per file), and
files shown at `load` start while the page still renders the rest (Coupa's comments).
Why iframes and not `<a download>`: Chromium hands an `<a download>` click straight
to its download manager, outside request interception, so neither the context's
routes nor the CDP Fetch guard would see it or its redirects (probed: a route that
fulfilled the URL was ignored). An iframe navigation is intercepted like any other,
redirect hops included; a response the browser shows instead of saving (an HTML
page) lands harmlessly in the sandboxed frame and is reported at once.
Click-only files (Coupa's `span[role=button]`, no href) run the site's own script:
the preset's overlays (a floating button bar over the content) are hidden first; the
element is scrolled into view and clicked like a user would, or by a DOM click when
something still covers it. A script that opens a window for its file gets a hidden
frame of this page instead (popups are blocked, and a frame keeps the request under the
guard); one that navigates the page to the file gets a download on this page. Clicks go
one at a time, each waiting for its download: a second navigation of the page would
cancel the first before its response arrives.
Playwright's Download.path() has no timeout: a stalled transfer would block the worker
until its task is killed, so the wait goes through `asyncio.wait_for` on the
implementation object (one private hop, kept here and nowhere else).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Download, Frame, Page
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from pool_core.po_page import CLICK_ATTRIBUTE, AttachmentLink
from pool_core.reasons import Reason

log = logging.getLogger(__name__)

# The final file name for a download's suggested name (sanitised, de-duplicated).
NameFor = Callable[[str], str]
GiveUp = Callable[[], str]
POLL_S = 0.25

FRAME_PREFIX = "poolsite-download-"
_TRIGGER_JS = """(items) => {
  for (const item of items) {
    const frame = document.createElement('iframe');
    frame.name = item.name;
    frame.setAttribute('sandbox', 'allow-downloads');  // no scripts from what it shows
    frame.style.display = 'none';
    frame.src = item.href;
    document.body.appendChild(frame);
  }
}"""


# Hides the preset's overlays and turns window.open() into a hidden frame of this page,
# named after the transfer being clicked (window.__poolsiteClick), so a file opened "in a
# new window" downloads here, under the guard. Links lose their target for the same reason.
_PREPARE_CLICKS_JS = """(args) => {
  for (const sel of args.overlays) {
    let els = []; try { els = document.querySelectorAll(sel); } catch (e) { continue; }
    for (const el of els) el.style.setProperty('display', 'none', 'important');
  }
  if (window.__poolsiteOpen) return;
  window.__poolsiteOpen = true;
  window.open = function (url) {
    const frame = document.createElement('iframe');
    frame.name = args.prefix + String(window.__poolsiteClick);
    frame.setAttribute('sandbox', 'allow-downloads');
    frame.style.display = 'none';
    frame.src = new URL(String(url || 'about:blank'), document.baseURI).href;
    document.body.appendChild(frame);
    return {closed: false, close() {}, focus() {}, blur() {}, postMessage() {}};
  };
  document.addEventListener('click', (event) => {
    const link = event.target && event.target.closest && event.target.closest('a[target]');
    if (link) link.removeAttribute('target');
  }, true);
}"""
_AIM_JS = """(el, index) => {
  window.__poolsiteClick = index;
  el.scrollIntoView({block: 'center'});
}"""
CLICK_TIMEOUT_S = 2.0  # a real click's wait for the element to be clickable


@dataclass
class Transfer:
    """One attachment's download: the link, the browser's Download, the outcome."""

    link: AttachmentLink
    download: Download | None = None
    path: Path | None = None  # where it was saved (the work folder), once finished
    sha256: str = ""  # set once the saved file is verified
    failure: str = ""  # DOWNLOAD_TIMEOUT | DOWNLOAD_FAILED | BLOCKED_URL | ...
    detail: str = ""
    final_url: str = ""  # where the request ended (after redirects), when known
    warning: str = ""  # kept, but its bytes do not match its name (TYPE_MISMATCH)


@dataclass
class Batch:
    """The downloads of one page, with the moment the last links were opened."""

    transfers: list[Transfer] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    arrived: list[Download] = field(default_factory=list)
    arrival_times: dict[int, float] = field(default_factory=dict)  # id(download) -> t
    shown: dict[int, str] = field(default_factory=dict)  # transfer index -> URL shown

    def listen(self, page: Page) -> None:
        page.on("download", self.arrive)
        page.on("framenavigated", self.frame_navigated)

    def stop_listening(self, page: Page) -> None:
        """The page serves the next PO too: its events are not this batch's any more."""
        # Local bookkeeping in Playwright: no round trip, fine on a closed page too.
        page.remove_listener("download", self.arrive)
        page.remove_listener("framenavigated", self.frame_navigated)

    def arrive(self, download: Download) -> None:
        self.arrived.append(download)
        self.arrival_times[id(download)] = time.monotonic()

    def frame_navigated(self, frame: Frame) -> None:
        """One of our frames displayed its response instead of downloading it."""
        suffix = frame.name[len(FRAME_PREFIX):]
        if frame.name.startswith(FRAME_PREFIX) and suffix.isdigit():
            index = int(suffix)
            if index < len(self.transfers) and frame.url != "about:blank":
                self.shown.setdefault(index, frame.url)


def open_batch(page: Page) -> Batch:
    """A batch listening for the page's downloads (stop_listening when done)."""
    batch = Batch()
    batch.listen(page)
    return batch


def start_downloads(page: Page, batch: Batch, links: list[AttachmentLink],
                    refused: dict[str, str], arrival_timeout_s: float,
                    overlays: tuple[str, ...] = (), give_up: GiveUp = lambda: "") -> None:
    """Trigger a download for every link; `refused` maps hrefs the allow-list refuses.

    `give_up` says why waiting for a click's download is pointless (the site sent the
    page to sign in), or "".
    """
    first = len(batch.transfers)
    batch.transfers += [Transfer(link) for link in links]
    added = list(enumerate(batch.transfers))[first:]
    clicks = [(i, t) for i, t in added if t.link.click]
    if clicks:
        page.evaluate(_PREPARE_CLICKS_JS, {"overlays": list(overlays), "prefix": FRAME_PREFIX})
        for index, transfer in clicks:
            if why := give_up():  # the page itself was sent away: nothing left to click
                transfer.failure, transfer.detail = "DOWNLOAD_FAILED", why
                continue
            _click(page, batch, index, transfer, arrival_timeout_s, give_up)
    batch.started = time.monotonic()  # the links' clock starts after the clicks' waits
    if clicks and (why := give_up()):
        # A click sent the page itself away (to sign in): its elements are gone, and
        # anything evaluated on it would wait for a document that never comes.
        for _index, transfer in added:
            if not transfer.failure and transfer.download is None:
                transfer.failure, transfer.detail = "DOWNLOAD_FAILED", why
        return
    frames = []
    for index, transfer in added:
        href = transfer.link.href
        if href and href in refused:
            transfer.failure, transfer.detail = Reason.BLOCKED_URL, refused[href]
        elif href:
            frames.append({"href": href, "name": f"{FRAME_PREFIX}{index}"})
    if frames:
        page.evaluate(_TRIGGER_JS, frames)


def _click(page: Page, batch: Batch, index: int, transfer: Transfer, timeout_s: float,
           give_up: GiveUp) -> None:
    """Click one href-less attachment and wait for what it starts (a download, a page)."""
    before = len(batch.arrived)
    element = page.locator(f"[{CLICK_ATTRIBUTE}='{transfer.link.click}']")
    try:
        element.evaluate(_AIM_JS, index)
        try:
            element.click(timeout=CLICK_TIMEOUT_S * 1000)
        except PlaywrightTimeoutError:  # still covered by something: click it in the DOM
            element.evaluate("el => el.click()")
    except PlaywrightError as exc:
        transfer.failure, transfer.detail = Reason.DOWNLOAD_FAILED, _short(exc)
        return
    deadline = time.monotonic() + timeout_s
    while (found := _new_arrival(batch, before)) is None and index not in batch.shown:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            transfer.failure = Reason.DOWNLOAD_TIMEOUT
            transfer.detail = f"clicking it started no download within {timeout_s:g} s"
            return
        if why := give_up():
            transfer.failure, transfer.detail = Reason.DOWNLOAD_FAILED, why
            return
        with suppress(PlaywrightTimeoutError):
            page.wait_for_event("download", timeout=min(remaining, POLL_S) * 1000)
    transfer.download = found


def _new_arrival(batch: Batch, before: int) -> Download | None:
    """A download that arrived since `before` and is not one of the batch's links."""
    links = {t.link.href for t in batch.transfers if t.link.href}
    return next((d for d in batch.arrived[before:] if d.url not in links), None)


def finish_downloads(page: Page, batch: Batch, folder: Path, timeout_s: float,
                     name_for: NameFor, give_up: GiveUp = lambda: "") -> None:
    """Save every download, or cancel it: `timeout_s` to start, then `timeout_s` to finish.

    Each download's clock starts when its response arrives, so files the browser
    queues behind others (six connections per host) are not charged for the wait.
    """
    wanted = [t for t in batch.transfers if not t.failure]
    _await_arrivals(page, batch, len(wanted), batch.started + timeout_s, give_up)
    for index, url in batch.shown.items():
        transfer = batch.transfers[index]
        transfer.final_url = url
        if url.startswith("chrome-error:"):
            transfer.failure = Reason.DOWNLOAD_FAILED
            transfer.detail = f"{transfer.link.href}: the request failed"
        else:
            transfer.failure = Reason.HTML_PAGE
            transfer.detail = f"{url[:200]}: the site showed a page instead of sending a file"
    wanted = [t for t in wanted if not t.failure]
    _match_arrivals(batch, wanted)
    for transfer in wanted:
        transfer.final_url = transfer.download.url if transfer.download is not None else ""
        if transfer.download is None:
            transfer.failure = Reason.DOWNLOAD_TIMEOUT
            transfer.detail = f"no download started within {timeout_s:g} s"
            continue
        deadline = batch.arrival_times[id(transfer.download)] + timeout_s
        _finish_one(transfer, transfer.download, folder, deadline, name_for)


def _await_arrivals(page: Page, batch: Batch, count: int, deadline: float,
                    give_up: GiveUp) -> None:
    while len(batch.arrived) + len(batch.shown) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or give_up():
            return
        try:
            # In slices: a frame showing a page instead of downloading also ends a wait.
            page.wait_for_event("download", timeout=min(remaining, POLL_S) * 1000)
        except PlaywrightTimeoutError:
            continue


def _match_arrivals(batch: Batch, wanted: list[Transfer]) -> None:
    """Pair each Download with its link: by URL first, then in arrival order."""
    claimed = {id(t.download) for t in batch.transfers if t.download is not None}
    unmatched = [d for d in batch.arrived if id(d) not in claimed]
    wanted = [t for t in wanted if t.download is None]
    for transfer in wanted:
        for download in unmatched:
            if transfer.link.href and download.url == transfer.link.href:
                transfer.download = download
                unmatched.remove(download)
                break
    for transfer in wanted:
        if transfer.download is None and unmatched:
            transfer.download = unmatched.pop(0)


def _finish_one(transfer: Transfer, download: Download, folder: Path, deadline: float,
                name_for: NameFor) -> None:
    remaining = max(0.0, deadline - time.monotonic())
    try:
        artifact = _wait_finished(download, remaining)
        target = folder / name_for(download.suggested_filename)
        try:
            # Take the finished file from Playwright's temp folder: no copy through the
            # driver, no second round trip to delete it.
            shutil.move(artifact, target)
        except OSError:
            download.save_as(target)
            _delete(download)
        transfer.path = target
    except TimeoutError:
        transfer.failure = Reason.DOWNLOAD_TIMEOUT
        transfer.detail = f"{download.url}: not finished within the download timeout"
        _cancel(download)
        _delete(download)
    except PlaywrightError as exc:
        transfer.failure, transfer.detail = Reason.DOWNLOAD_FAILED, _short(exc)
        _delete(download)


def _wait_finished(download: Download, timeout_s: float) -> Path:
    """The finished file's path; TimeoutError when not finished within `timeout_s`."""
    try:
        impl = download._impl_obj  # no public API waits with a timeout (module docstring)
        waiter = download._sync
    except AttributeError:  # a Playwright without these internals
        log.warning("Download.path() cannot time out here; the task timeout is the limit")
        return Path(download.path())
    return Path(waiter(asyncio.wait_for(impl.path(), timeout=max(timeout_s, 0.001))))


def _cancel(download: Download) -> None:
    try:
        download.cancel()
    except PlaywrightError:
        log.debug("cancelling %s failed", download.url, exc_info=True)


def _delete(download: Download) -> None:
    try:
        download.delete()
    except PlaywrightError:
        log.debug("deleting the artifact of %s failed", download.url, exc_info=True)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
