"""The dashboard page, its no-JS control form, and failure screenshots.

The page renders the same snapshot the WebSocket sends, so it is complete without
JavaScript; with it, dashboard.js keeps it live. Controls post here when scripts are
off: CSRF, login and the operator role are checked, then `request_control` decides.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from poolsite.batches.models import Attempt
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
        _announce()
    return redirect("dashboard")


def _announce() -> None:
    """Send the new picture to every open dashboard (best effort: they refresh anyway)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, {"type": "pool.snapshot",
                                                "snapshot": build_snapshot()})
    except Exception:
        log.info("dashboards not told about a control; they see it on the next update",
                 exc_info=True)


@require_GET
@viewer_required
def screenshot(request: HttpRequest, attempt_id: int) -> FileResponse:
    """Serve an attempt's failure screenshot from the output root, nowhere else."""
    attempt = get_object_or_404(Attempt.objects.only("screenshot", "po_id"), pk=attempt_id)
    if not attempt.screenshot:
        raise Http404("this attempt has no screenshot")
    root = Path(settings.OUTPUT_DIR).resolve()
    path = (root / attempt.screenshot).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise Http404("screenshot not found")
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if not content_type.startswith("image/"):
        raise Http404("not an image")
    return FileResponse(path.open("rb"), content_type=content_type, as_attachment=False,
                        filename=f"attempt-{attempt.pk}-{path.name}")
