"""The Sites page: the procurement sites this deployment works on, kept by operators.

Viewers see the list; operators add, change and delete. Every change is a
ControlAction with who, when and each changed field's old and new value.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from poolsite.batches.forms import SiteForm
from poolsite.batches.models import ControlAction, Site
from poolsite.batches.roles import can_operate, operator_required, viewer_required
from poolsite.batches.site_rules import site_presets

Action = ControlAction.Action


def _context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    return {"can_operate": can_operate(request.user), **extra}


@viewer_required
def site_list(request: HttpRequest) -> HttpResponse:
    presets = site_presets()
    sites = [(site, presets.get(site.preset)) for site in Site.objects.all()]
    return render(request, "batches/sites.html", _context(request, sites=sites))


@operator_required
def site_add(request: HttpRequest) -> HttpResponse:
    form = SiteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            site = form.save()
            site.record_change(request.user, Action.ADD_SITE)
        messages.success(request, f"Site {site.name!r} added.")
        return redirect("site_list")
    return _form_page(request, form, None)


@operator_required
def site_edit(request: HttpRequest, site_id: int) -> HttpResponse:
    site = get_object_or_404(Site, pk=site_id)
    before = site.audited_values()
    form = SiteForm(request.POST or None, instance=site)
    if request.method == "POST" and form.is_valid():
        if site.audited_values() == before:
            messages.info(request, f"Site {site.name!r}: nothing changed.")
            return redirect("site_list")
        with transaction.atomic():
            site.updated_at = timezone.now()
            form.save()
            site.record_change(request.user, Action.CHANGE_SITE, before)
        messages.success(request, f"Site {site.name!r} saved.")
        return redirect("site_list")
    return _form_page(request, form, site)


@operator_required
@require_POST
def site_delete(request: HttpRequest, site_id: int) -> HttpResponse:
    site = get_object_or_404(Site, pk=site_id)
    used = site.batches.count()
    if used:
        # Its batches still run on it (address, download hosts): keep it.
        messages.warning(request, f"Site {site.name!r} is used by {used} batch"
                         f"{'es' if used != 1 else ''}: it cannot be deleted.")
        return redirect("site_list")
    before = site.audited_values()
    with transaction.atomic():
        site.record_change(request.user, Action.DELETE_SITE, before)
        site.delete()
    messages.success(request, f"Site {before['name']!r} deleted.")
    return redirect("site_list")


def _form_page(request: HttpRequest, form: SiteForm, site: Site | None) -> HttpResponse:
    status = 400 if request.method == "POST" else 200
    return render(request, "batches/site_form.html",
                  _context(request, form=form, site=site), status=status)
