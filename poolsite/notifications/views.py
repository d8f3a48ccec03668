"""The Notifications page: where poolsite tells operators of finished batches, pauses
and crash loops. Viewers see targets (Apprise URLs masked) and what was sent; operators
add, change, delete and test targets."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from poolsite.batches.roles import can_operate, operator_required, viewer_required
from poolsite.notifications.forms import TargetForm
from poolsite.notifications.models import Notification, NotificationTarget, TargetChange
from poolsite.notifications.sender import send_test

RECENT = 50  # sends listed on the page


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {"can_operate": can_operate(request.user), **extra}


@viewer_required
def target_list(request: HttpRequest) -> HttpResponse:
    targets = NotificationTarget.objects.select_related("site", "created_by")
    sent = Notification.objects.select_related("requested_by")[:RECENT]
    changes = TargetChange.objects.all()[:RECENT]
    return render(request, "notifications/list.html",
                  _context(request, targets=targets, sent=sent, changes=changes))


@operator_required
def target_add(request: HttpRequest) -> HttpResponse:
    form = TargetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        target = form.save(commit=False)
        target.created_by = request.user
        with transaction.atomic():
            target.save()
            target.record_change(request.user, TargetChange.Action.ADD)
        messages.success(request, f"Notification target {target.name!r} added.")
        return redirect("notification_list")
    return _form_page(request, form, None)


@operator_required
def target_edit(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(NotificationTarget, pk=target_id)
    before, saved_address = target.audited_values(), target.address
    form = TargetForm(request.POST or None, instance=target)
    if request.method == "POST" and form.is_valid():
        target = form.save(commit=False)
        target.updated_at = timezone.now()
        target._address_changed = target.address != saved_address
        with transaction.atomic():
            target.save()
            target.record_change(request.user, TargetChange.Action.CHANGE, before)
        messages.success(request, f"Notification target {target.name!r} saved.")
        return redirect("notification_list")
    return _form_page(request, form, target)


@operator_required
@require_POST
def target_delete(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(NotificationTarget, pk=target_id)
    name = target.name
    with transaction.atomic():
        target.record_change(request.user, TargetChange.Action.DELETE,
                             target.audited_values())
        target.delete()
    messages.success(request, f"Notification target {name!r} deleted.")
    return redirect("notification_list")


@operator_required
@require_POST
def target_test(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(NotificationTarget, pk=target_id)
    row = send_test(target, request.user)
    if row.ok:
        messages.success(request, f"Test sent to {target.name!r} "
                                  f"({target.shown_address}) in {row.seconds:.1f} s.")
    else:
        messages.error(request, f"Test to {target.name!r} failed: {row.error}")
    return redirect("notification_list")


def _form_page(request: HttpRequest, form: TargetForm,
               target: NotificationTarget | None) -> HttpResponse:
    status = 400 if request.method == "POST" else 200
    return render(request, "notifications/form.html",
                  _context(request, form=form, target=target), status=status)
