"""The attachment sources of a page: read them, start every file, finish the downloads.

Files already shown at `load` start at once while the rest of the page renders, then
the rest (pool_core.po_page reads the sources the preset names). A source that never
rendered fails the PO as LAYOUT_UNKNOWN (tried once more first). Waiting stops early
when the page or its requests were sent to sign in (pool_core.sign_in).
"""

from __future__ import annotations

from playwright.sync_api import Page

from pool_core.attempt import Attempt, Outcome, Stop
from pool_core.downloads import Batch, finish_downloads, start_downloads
from pool_core.messages import POStatus
from pool_core.names import dedupe, safe_filename
from pool_core.po_page import AttachmentLink, read_sources
from pool_core.reasons import Reason
from pool_core.sign_in import sign_in_seen, stop_if_left_site, stop_if_sent_to_sign_in

LAYOUT_RETRIES = 1  # a page not of the known shape is tried once more, then failed


def fetch_sources(attempt: Attempt, page: Page, kind: str, batch: Batch) -> list[AttachmentLink]:
    """Start every file of the page's sources; return them all (LAYOUT_UNKNOWN raises).

    Files already shown at `load` start at once (Coupa's header buttons are clicked one
    by one, a round trip each) while the rest renders (the comments app), then the rest.
    """
    with attempt.step("downloads"):
        here = page.url
        early = [link for reading in read_sources(page, attempt.site, kind, wait=False)
                 if reading.seen for link in reading.links]
        _start(attempt, page, batch, early)
    with attempt.step("attachments"):
        links = _read_sources(attempt, page, kind)
    if page.url != here:  # a click navigated instead of downloading
        raise Stop(Outcome(POStatus.FAILED, Reason.CLICK_NAVIGATED,
                            f"clicking a file took the {kind} page to {page.url[:200]}",
                            retryable=True))
    started = {_link_key(link) for link in early}
    with attempt.step("downloads"):
        _start(attempt, page, batch, [x for x in links if _link_key(x) not in started])
    return links


def _link_key(link: AttachmentLink) -> str:
    return link.href or f"click:{link.click}"


def _start(attempt: Attempt, page: Page, batch: Batch, links: list[AttachmentLink]) -> None:
    if not links:
        return
    refused = {link.href: why for link in links
               if link.href and (why := attempt.guard.problem(link.href))}
    start_downloads(page, batch, links, refused, attempt.job.download_timeout_s,
                    attempt.site.overlay_selectors, give_up=lambda: sign_in_seen(attempt))


def finish_batch(attempt: Attempt, page: Page, batch: Batch, taken: set[str]) -> None:
    assert attempt.work is not None
    with attempt.step("downloads"):
        finish_downloads(page, batch, attempt.work, attempt.job.download_timeout_s,
                         lambda suggested: dedupe(safe_filename(suggested), taken),
                         give_up=lambda: sign_in_seen(attempt))


def _read_sources(attempt: Attempt, page: Page, kind: str) -> list[AttachmentLink]:
    """Every file the page's sources show; LAYOUT_UNKNOWN when one is not understood."""
    readings = read_sources(page, attempt.site, kind, give_up=lambda: sign_in_seen(attempt))
    attempt.readings.extend(readings)
    problems = [r.describe() for r in readings if not r.understood]
    if problems:  # a comments app whose data request was walled is no layout problem
        stop_if_left_site(attempt, page)
        stop_if_sent_to_sign_in(attempt)
        retry = attempt.task.attempt <= LAYOUT_RETRIES
        raise Stop(Outcome(POStatus.FAILED, Reason.LAYOUT_UNKNOWN,
                            f"the {kind} page is not the shape the site preset describes: "
                            + "; ".join(problems), retryable=retry))
    return [link for reading in readings for link in reading.links]


def wants_requisition(when_no_pdf: bool, links: list[AttachmentLink]) -> bool:
    if not links:
        return True
    return when_no_pdf and not any(
        (link.label or link.href).lower().split("?")[0].endswith(".pdf") for link in links)
