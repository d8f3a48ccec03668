"""The API tokens page: a user creates, lists and revokes their own tokens.

A new token's secret is shown once, in the answer to the POST that created it, and is
never stored (only its SHA-256). Admins see and revoke everyone's in the admin.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from poolsite.api.models import ApiToken
from poolsite.batches.roles import can_operate, can_view

MAX_TOKENS = 20  # active tokens per user


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what it is for, e.g. 'ERP weekly export'")


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def token_list(request: HttpRequest) -> HttpResponse:
    if not can_view(request.user):
        raise PermissionDenied
    form = TokenForm(request.POST or None)
    secret = ""
    status = 200
    if request.method == "POST":
        active = ApiToken.objects.filter(user=request.user.pk, revoked_at=None).count()
        if active >= MAX_TOKENS:
            form.add_error(None, f"you have {active} active tokens: revoke one first")
        if form.is_valid():
            _token, secret = ApiToken.issue(request.user, form.cleaned_data["name"])
            form = TokenForm()
        else:
            status = 400
    tokens = ApiToken.objects.filter(user=request.user.pk)
    return render(request, "api/tokens.html", {
        "form": form, "tokens": tokens, "secret": secret,
        "can_operate": can_operate(request.user)}, status=status)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.objects.select_related("user"), pk=token_id)
    if token.user_id != request.user.pk and not request.user.is_superuser:
        raise PermissionDenied
    if token.revoke(request.user):
        messages.success(request, f"Token {token} revoked: it no longer works.")
    else:
        messages.info(request, f"Token {token} was already revoked.")
    return redirect("api_tokens")
