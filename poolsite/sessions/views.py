"""The Site sessions page: each site's session status; upload, check, delete (operators).

The session files themselves are never served: the page shows counts, hosts, dates
and probe results only.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from pool_core.session_check import STORAGE_STATE, summarize_state
from poolsite.batches.forms import UploadLimitHandler
from poolsite.batches.models import ControlAction
from poolsite.batches.roles import can_operate, operator_required, viewer_required
from poolsite.sessions import store
from poolsite.sessions.cookie_files import MAX_BYTES, SessionFileError, storage_state_from_upload
from poolsite.sessions.health import (
    check_saved,
    default_base_url,
    presets,
    probe,
    site_sessions,
    tenant_for,
)
from poolsite.sessions.models import SiteSession

FORM_OVERHEAD = 64 * 1024


class SessionUploadForm(forms.Form):
    site = forms.ChoiceField(label="Site")
    base_url = forms.URLField(label="Site address (optional)", required=False,
                              assume_scheme="https",
                              help_text="the deployment, e.g. https://acme.coupahost.com")
    file = forms.FileField(label="Session file",
                           help_text="Playwright storage state, cookies.txt, or the JSON "
                                     "a cookie-export extension writes")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        site = self.fields["site"]
        assert isinstance(site, forms.ChoiceField)
        site.choices = [(name, name) for name in sorted(presets())]


@viewer_required
def sessions_page(request: HttpRequest) -> HttpResponse:
    return _page(request, SessionUploadForm())


@csrf_exempt  # checked by _session_upload, once the size limit is in place
@operator_required
def session_upload(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return redirect("site_sessions")
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BYTES + FORM_OVERHEAD:
        return _refuse(request, SessionUploadForm(), "", "the file is larger than "
                       f"{MAX_BYTES // 1024} KB")
    limiter = UploadLimitHandler(request, MAX_BYTES)
    request.upload_handlers = [limiter, *request.upload_handlers]
    return _session_upload(request, limiter)


@csrf_protect
def _session_upload(request: HttpRequest, limiter: UploadLimitHandler) -> HttpResponse:
    form = SessionUploadForm(request.POST, request.FILES)
    if limiter.exceeded:
        return _refuse(request, form, "", f"the file is larger than {MAX_BYTES // 1024} KB")
    if not form.is_valid():
        return _page(request, form, status=400)
    site = form.cleaned_data["site"]
    preset = presets()[site]
    base_url = form.cleaned_data["base_url"].rstrip("/") or default_base_url(preset)
    try:
        # A configured tenant's own domain counts as the site's for its cookies.
        state = storage_state_from_upload(form.cleaned_data["file"].read(),
                                          tenant_for(preset, base_url))
    except SessionFileError as exc:
        return _refuse(request, form, site, str(exc))
    # Probe the new session before it replaces anything: a file that is not signed in
    # (or is not what it claims) must not take the place of a working session.
    staged = store.stage_storage_state(site, state)
    try:
        result = probe(preset, base_url, storage_state=str(staged))
        if result.signed_in is not True:
            kept = SiteSession.objects.filter(site=site).exists()
            return _refuse(request, form, site, (
                f"the uploaded session is not signed in ({result.message}); "
                + ("the saved session is unchanged" if kept else "nothing was saved")))
        saved = store.adopt(site, staged, STORAGE_STATE, summarize_state(state, "saved"),
                            user=request.user, base_url=base_url,
                            source=SiteSession.Source.UPLOAD,
                            action=ControlAction.Action.UPLOAD_SESSION,
                            details={"file": form.cleaned_data["file"].name[:100]})
    finally:
        staged.unlink(missing_ok=True)  # gone already when adopted
    now = timezone.now()
    SiteSession.objects.filter(pk=saved.pk).update(
        last_probe_at=now, last_probe_ok=True, last_probe_message=result.message[:500],
        last_ok_at=now)
    messages.success(request, f"Session for {site} saved: {saved.cookie_count} "
                     f"cookie(s); probe: {result.message}")
    return redirect("site_sessions")


@operator_required
@require_POST
def session_check(request: HttpRequest, site: str) -> HttpResponse:
    result = check_saved(site, force=True)
    level = messages.success if result.signed_in else messages.warning
    level(request, f"{site}: {result.message}")
    return redirect("site_sessions")


@operator_required
@require_POST
def session_delete(request: HttpRequest, site: str) -> HttpResponse:
    if site not in presets() and not SiteSession.objects.filter(site=site).exists():
        messages.warning(request, f"no site {site[:50]!r}")
    elif store.delete_session(site, user=request.user):
        messages.success(request, f"Session for {site} deleted.")
    else:
        messages.warning(request, f"There was no session for {site}.")
    return redirect("site_sessions")


def _refuse(request: HttpRequest, form: SessionUploadForm, site: str,
            why: str) -> HttpResponse:
    store.record(request.user, ControlAction.Action.UPLOAD_SESSION,
                 ControlAction.Outcome.REFUSED, f"refused: {why}"[:1000], site=site)
    return _page(request, form, refusal=why, status=400)


def _page(request: HttpRequest, form: SessionUploadForm, status: int = 200,
          **extra: Any) -> HttpResponse:
    saved = {s.site: s for s in SiteSession.objects.all()}
    rows = [{"site": row["site"], "saved": saved.get(row["site"])} for row in site_sessions()]
    return render(request, "sessions/sessions.html", {
        "can_operate": can_operate(request.user), "form": form, "rows": rows, **extra},
        status=status)
