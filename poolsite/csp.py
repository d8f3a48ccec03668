"""Content-Security-Policy on every response, the admin's included.

A small middleware rather than django-csp: the policy is one fixed string but for
the WebSocket origin, nothing uses nonces, and Django 5.2 has no CSP support of its
own (6.0 has). No inline script or style is allowed: the templates keep theirs in
static files. The one inline bit left is in Django's admin changelist (a <style>
when a model has no actions); it is allowed by its hash, computed from Django's own
template so that an upgrade that changes it cannot silently break the page.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import django.contrib.admin
from django.http import HttpRequest, HttpResponseBase

HEADER = "Content-Security-Policy"


@functools.cache
def admin_style_hashes() -> tuple[str, ...]:
    """CSP hashes of the inline <style> blocks in Django's admin templates."""
    folder = Path(django.contrib.admin.__file__).parent / "templates" / "admin"
    found: list[str] = []
    for template in sorted(folder.glob("*.html")):
        for body in re.findall(r"<style>(.*?)</style>", template.read_text(), re.S):
            digest = hashlib.sha256(body.encode()).digest()
            found.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return tuple(found)


def policy(request: HttpRequest) -> str:
    # connect-src: the dashboard's WebSocket. CSP 3 lets 'self' cover ws/wss on the
    # same host, but not every browser implements that yet, so name it.
    socket = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' " + " ".join(admin_style_hashes()),
        "img-src 'self' data:",
        f"connect-src 'self' {socket}",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = policy(request)
        return response
