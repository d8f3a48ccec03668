"""A Content-Security-Policy on every page, and nothing inline for it to refuse.

Checked three ways: the header on every kind of response; no inline script or style
in any template of ours; and real Chromium on the admin (changelists, change forms),
the dashboard and the batch pages reporting no CSP violation at all.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import Browser, sync_playwright

from pool_core.browser import launch_args
from poolsite.batches.models import Batch, ControlAction, PurchaseOrder
from poolsite.csp import admin_style_hashes

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "csp-test-password-42"
INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.I)


def _directives(header: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in header.split(";") if part.strip()}


@pytest.mark.django_db
def test_every_kind_of_page_gets_the_policy() -> None:
    root = User.objects.create_superuser("root", "root@example.org", None)
    client = Client()
    client.force_login(root)
    for url in ("/", "/batches/", "/batches/upload/", "/site-sessions/", "/admin/",
                "/api/docs", "/api/tokens/", "/api/me",
                "/admin/batches/purchaseorder/", "/healthz", "/static/poolsite.css",
                "/accounts/login/", "/no-such-page/"):
        response = client.get(url)
        header = response.headers.get("Content-Security-Policy", "")
        directives = _directives(header)
        assert directives.get("frame-ancestors") == "frame-ancestors 'none'", url
        assert directives.get("script-src") == "script-src 'self'", url
        assert "'unsafe-inline'" not in header and "'unsafe-eval'" not in header, url
        assert directives.get("connect-src") == "connect-src 'self' ws://testserver", url
        assert directives.get("object-src") == "object-src 'none'", url
        # Django's one inline admin <style> (a changelist without actions), by hash.
        assert all(digest in directives["style-src"] for digest in admin_style_hashes())
    assert admin_style_hashes()
    secure = client.get("/", secure=True).headers["Content-Security-Policy"]
    assert "connect-src 'self' wss://testserver" in secure


def test_no_template_of_ours_has_inline_script_or_style() -> None:
    templates = [*ROOT.glob("templates/**/*.html"), *ROOT.glob("poolsite/**/templates/**/*.html")]
    assert len(templates) > 10
    found = [f"{path.relative_to(ROOT)}: {match.group(0)!r}" for path in templates
             for match in INLINE.finditer(path.read_text())]
    assert found == []


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_the_admin_the_dashboard_and_the_batch_pages_raise_no_csp_violation(
        live_server: Any, browser_path: str) -> None:
    User.objects.create_superuser("root", "root@example.org", PASSWORD)
    batch = Batch.objects.create(name="csp", source_name="csp.csv", source_sha256="ab" * 32,
                                 site_preset="demo", po_count=1)
    po = PurchaseOrder.objects.create(batch=batch, row_number=2, po_number="PO1",
                                      supplier="Acme", amount=Decimal("1.50"),
                                      url="http://127.0.0.1:8001/order_headers/1")
    ControlAction.objects.create(username="root", action="pause", outcome="done")
    pages = ["/admin/", "/admin/batches/batch/", f"/admin/batches/batch/{batch.pk}/change/",
             "/admin/batches/purchaseorder/", f"/admin/batches/purchaseorder/{po.pk}/change/",
             "/admin/batches/controlaction/", "/admin/auth/user/", "/admin/auth/user/add/",
             "/admin/auth/user/1/change/", "/admin/axes/accessattempt/",
             "/admin/axes/accesslog/", "/admin/axes/accessfailurelog/",
             "/admin/site_sessions/sitesession/", "/admin/batches/run/",
             "/admin/batches/attempt/", "/admin/batches/document/", "/admin/auth/group/",
             "/admin/auth/group/add/", "/admin/password_change/",
             "/", "/batches/", f"/batches/{batch.pk}/", f"/pos/{po.pk}/", "/batches/upload/",
             "/site-sessions/", "/api/tokens/", "/api/docs", "/admin/api/apitoken/"]
    # Playwright's sync API runs an event loop in this thread: no ORM from here on.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        try:
            violations = _visit(browser, live_server.url, pages)
        finally:
            browser.close()
    assert violations == []


def _visit(browser: Browser, base: str, pages: list[str]) -> list[str]:
    context = browser.new_context()
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text else None)
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    for path in pages:
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 200, path
        assert response.headers.get("content-security-policy"), path
        page.wait_for_load_state("load")
    # The API's docs page (Swagger UI from django-ninja's static files) rendered the
    # operations from the schema it fetched.
    page.goto(f"{base}/api/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    assert page.locator(".opblock").count() >= 10
    # The admin's JavaScript ran: the changelist's "select all" box works.
    page.goto(f"{base}/admin/batches/purchaseorder/")
    page.check("#action-toggle")
    assert page.is_checked("input.action-select")
    context.close()
    return violations
