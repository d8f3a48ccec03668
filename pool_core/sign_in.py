"""Whether an attempt's session is still signed in, from what the page was sent to.

The main frame leaving the site's allow-list (an expired session sent to the identity
provider) is LOGIN_REQUIRED when the URL is a sign-in URL or the site's probe page is
walled too; otherwise BLOCKED_URL. A request of the page (the comments app, a download)
redirected to a sign-in URL is LOGIN_REQUIRED too. Each check raises Stop.
"""

from __future__ import annotations

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from pool_core.attempt import Attempt, Outcome, Stop
from pool_core.downloads import Transfer
from pool_core.errors import says_target_closed
from pool_core.messages import POStatus
from pool_core.po_page import read_verdict
from pool_core.reasons import Reason


def stop_if_left_site(attempt: Attempt, page: Page) -> None:
    """The page was sent off the allow-list: a sign-in elsewhere, or a PO that leaves."""
    if not attempt.guard.left_site:
        return
    url, why = attempt.guard.left_site[0]
    if _signed_out(attempt, page, url):
        raise Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                            f"the site sent the browser to {url[:200]} (a sign-in page off "
                            "the allow-list): the worker's session is not signed in"))
    raise Stop(Outcome(POStatus.FAILED, Reason.BLOCKED_URL,
                        f"the page tried to go to {url[:200]} ({why}); blocked"))


def _signed_out(attempt: Attempt, page: Page, url: str) -> bool:
    """Whether leaving for `url` means the session ended: its URL says so, or the probe."""
    site = attempt.site
    if site.is_sign_in_url(url):
        return True
    if not (site.probe_url and site.base_url):
        return False
    attempt.guard.left_site.clear()
    probe = site.probe_url.format(base=site.base_url)
    with attempt.step("probe"):
        try:
            page.goto(probe, wait_until="load", timeout=attempt.nav_ms)
        except PlaywrightError as exc:
            if says_target_closed(exc):
                raise
            return bool(attempt.guard.left_site)  # the probe page was sent away too
        return read_verdict(page, site).login


def name_blocked_frames(attempt: Attempt, transfers: list[Transfer]) -> None:
    """A download whose frame failed because the guard refused a hop is BLOCKED_URL."""
    if not attempt.guard.blocked_frames:
        return
    url, why = attempt.guard.blocked_frames[0]
    for transfer in transfers:
        if (transfer.failure == Reason.DOWNLOAD_FAILED
                and transfer.final_url.startswith("chrome-error:")):
            transfer.failure, transfer.detail = Reason.BLOCKED_URL, f"{url[:200]}: {why}"


def stop_if_signed_out(attempt: Attempt, transfers: list[Transfer]) -> None:
    """An attachment led to the sign-in page: the session expired during the PO."""
    for transfer in transfers:
        url = transfer.final_url
        if url and attempt.site.is_sign_in_url(url):
            raise Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                                f"an attachment led to the sign-in page ({url[:200]}): "
                                "the session expired during the PO"))
    if any(t.failure for t in transfers):
        stop_if_sent_to_sign_in(attempt)


def sign_in_seen(attempt: Attempt) -> str:
    """Why waiting on the page is pointless: it or its requests were sent away, or ""."""
    if attempt.guard.left_site:
        return f"the page was sent to {attempt.guard.left_site[0][0][:200]}"
    url = _refused_sign_in(attempt)
    return f"a request of the page was sent to the sign-in page ({url[:200]})" if url else ""


def stop_if_sent_to_sign_in(attempt: Attempt) -> None:
    """A request of the page was redirected to a sign-in URL (and refused there)."""
    url = _refused_sign_in(attempt)
    if url:
        raise Stop(Outcome(POStatus.LOGIN_REQUIRED, Reason.LOGIN_REQUIRED,
                            f"a request of the page was sent to the sign-in page "
                            f"({url[:200]}): the session expired during the PO"))


def _refused_sign_in(attempt: Attempt) -> str:
    """The first request the guard refused that was on its way to a sign-in page, or ""."""
    guard = attempt.guard
    refused = [url for url, _ in guard.blocked_frames] + guard.subresources_blocked
    return next((url for url in refused if attempt.site.is_sign_in_url(url)), "")
