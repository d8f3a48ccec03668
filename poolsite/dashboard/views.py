"""The dashboard page and its no-JS control form.

The page renders the same snapshot the WebSocket sends, so it is complete without
JavaScript; with it, dashboard.js keeps it live. Controls post here when scripts are
off: CSRF, login and the operator role are checked, then `request_control` decides.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from poolsite.batches.models import PurchaseOrder
from poolsite.batches.roles import can_operate, operator_required, viewer_required
from poolsite.dashboard.control_messages import (
    DESTRUCTIVE,
    BadControl,
    parse_control,
    perform_control,
)
from poolsite.dashboard.snapshot import build_snapshot
from poolsite.supervisor.broadcast import GROUP

log = logging.getLogger(__name__)


@require_GET
@viewer_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Show the pool: a server-rendered snapshot that dashboard.js keeps live."""
    snapshot = build_snapshot()
    snapshot["can_control"] = can_operate(request.user)
    return render(request, "dashboard/dashboard.html", {"snapshot": snapshot})


@require_GET
@viewer_required
def worker_po(request: HttpRequest, batch_id: int, po_number: str) -> HttpResponse:
    """Go to the page of the PO a worker card shows (its number, in its host's batch)."""
    po = (PurchaseOrder.objects.filter(batch_id=batch_id, po_number=po_number)
          .order_by("id").first())
    if po is None:
        raise Http404("no such PO in this batch")
    return redirect("po_detail", po.pk)


@require_POST
@operator_required
def control(request: HttpRequest) -> HttpResponse:
    """Press a button without JavaScript; destructive ones go through a confirm page."""
    try:
        control_request = parse_control(request.POST.dict())
    except BadControl as exc:
        messages.error(request, str(exc))
        return redirect("dashboard")
    if control_request.action in DESTRUCTIVE and request.POST.get("confirmed") != "yes":
        return render(request, "dashboard/confirm.html", {"fields": request.POST.dict(),
                                                          "request_": control_request})
    ok, message = perform_control(request.user.pk, control_request)
    (messages.success if ok else messages.error)(request, message)
    if ok:
        announce()
    return redirect("dashboard")


def announce() -> None:
    """Send the new picture to every open dashboard (best effort: they refresh anyway).

    After a press here, or through the API.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "pool.snapshot",
                                                "snapshot": build_snapshot()})
    except Exception:
        log.info("dashboards not told about a control; they see it on the next update",
                 exc_info=True)

