"""The site outage probe: after the pool paused for a failing site, resume by itself.

The engine pauses with a SITE_FAILING reason after consecutive HTTP 5xx or network
failures. While the plan is paused so, a host asks the site's front page over HTTP
every `site_probe_seconds`; once it answers below 500, the plan resumes and the POs that
failed only because the site was down are queued again (one transaction). A login wall
or an operator's pause waits for a person.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import Q

from pool_core.reasons import SITE_FAILURE_PREFIXES, Pause, PauseReason
from pool_core.sites import SitePreset
from poolsite.batches.models import PurchaseOrder, Status
from poolsite.supervisor.models import PoolPlan


def site_answers(site: SitePreset) -> bool:
    """Whether the site's front page answers below HTTP 500 (a redirect counts)."""
    if site.check_url(site.base_url) is not None:
        return False  # never probe outside the allow-list

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(site.base_url + "/", timeout=5) as response:
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


class OutageProbe:
    """Probes the site of an outage-paused plan, at most once every `every` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._last = 0.0

    def maybe_resume(self, plan: PoolPlan, site_of: Callable[[int], SitePreset | None]
                     ) -> tuple[SitePreset, int] | None:
        """Resume the plan if the site answers again; return it and the POs queued again.

        None when it did not resume (not an outage pause, not time to probe, the site
        still down, or another host resumed first). `site_of(batch_id)` gives the site.
        """
        pause = Pause.from_text(plan.reason)
        if pause is None or pause.reason is not PauseReason.SITE_FAILING or plan.batch_id is None:
            return None
        now = time.monotonic()
        if now - self._last < self.every:
            return None
        self._last = now
        site = site_of(plan.batch_id)
        if site is None or not site.base_url or not site_answers(site):
            return None
        with transaction.atomic():
            resumed = PoolPlan.transition(from_version=plan.version,
                                          from_states=(PoolPlan.State.PAUSED,),
                                          state=PoolPlan.State.RUNNING, reason="")
            if resumed is None:
                return None
            failed_by_outage = Q()
            for prefix in SITE_FAILURE_PREFIXES:  # what a PO failed with while the site was down
                failed_by_outage |= Q(reason__startswith=prefix)
            requeued = PurchaseOrder.objects.filter(
                failed_by_outage, batch=plan.batch_id, status=Status.FAILED).retry()
        return site, requeued
