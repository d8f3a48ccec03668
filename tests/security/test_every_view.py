"""Every URL of the product, checked the same way, so a new view cannot slip past.

For each pattern (the admin has its own checks): anonymous visitors get nothing but the
login page; a POST without a CSRF token is refused; a viewer cannot change anything;
and no GET, by anyone, changes the database.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from poolsite.api.models import ApiToken
from poolsite.batches.models import Attempt, Document
from poolsite.notifications.models import NotificationTarget
from tests.poolsite.base import BaseTestCase

# Reachable without signing in, and read-only.
PUBLIC = {"login", "healthz", "metrics"}
# django-ninja's root placeholder (/api/): a 404 for everyone, whatever the method.
ALWAYS_NOT_FOUND = {"api:api-root"}
SKIPPED_NAMESPACES = ("admin",)


def every_named_url(patterns: list[Any], prefix: str = "",
                    namespace: str = "") -> list[tuple[str, str]]:
    """(name, pattern) of every URL outside the skipped namespaces."""
    found: list[tuple[str, str]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in SKIPPED_NAMESPACES:
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += every_named_url(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            assert entry.name, f"URL {prefix}{entry.pattern} has no name: name it"
            found.append((namespace + entry.name, prefix + str(entry.pattern)))
    return found


def is_api(name: str) -> bool:
    """The HTTP API's endpoints: a Bearer token or nothing (a session gives no access).

    Without a valid token they answer 401 (the docs and schema send a browser to sign
    in), and no cookie is ever taken for a credential, so there is no CSRF to forge.
    """
    return name.startswith("api:")


def database_state() -> dict[str, Any]:
    """Row counts of every model, and every PO's status: what a GET must not change."""
    state: dict[str, Any] = {model._meta.label: model._default_manager.count()
                             for model in apps.get_models()
                             # Sign-ins (this test signs in): the session, and
                             # the sign-in log django-axes keeps.
                             if model._meta.label not in ("sessions.Session",
                                                          "axes.AccessLog")}
    from poolsite.batches.models import PurchaseOrder

    state["po statuses"] = sorted(PurchaseOrder.objects.values_list("id", "status"))
    return state


class EveryViewTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.batch = self.make_batch(4)
        self.done, self.failed = self.make_history(self.batch)
        self.queued = self.batch.pos.filter(status="QUEUED").first()
        self.site = self.make_site()
        self.token, _ = ApiToken.issue(self.alice, "every view")
        self.target = NotificationTarget.objects.create(
            name="ops", kind="email", address="ops@example.org", events=["batch_finished"])
        self.urls = [(name, self._url(name, pattern))
                     for name, pattern in every_named_url(get_resolver().url_patterns)]

    def _url(self, name: str, pattern: str) -> str:
        """Reverse a URL, filling its arguments with objects that exist."""
        values = {"batch_id": self.batch.pk, "po_id": self.failed.pk, "fmt": "csv",
                  "document_id": Document.objects.first().pk,  # type: ignore[union-attr]
                  "attempt_id": Attempt.objects.filter(po=self.failed).first().pk,  # type: ignore[union-attr]
                  "site": "demo", "site_id": self.site.pk, "token_id": self.token.pk,
                  "target_id": self.target.pk, "po_number": self.failed.po_number}
        kwargs = {key: values[key] for key in values if f"<{key}>" in pattern
                  or f":{key}>" in pattern}
        return reverse(name, kwargs=kwargs)

    def test_it_knows_every_url(self) -> None:
        names = {name for name, _ in self.urls}
        assert {"dashboard", "batch_list", "batch_upload", "healthz"} <= names
        assert len(self.urls) >= 20

    def test_it_sends_anonymous_visitors_to_the_login_page(self) -> None:
        client = Client()
        for name, url in self.urls:
            if name in PUBLIC or name in ALWAYS_NOT_FOUND:
                continue
            for method in ("get", "post"):
                response = getattr(client, method)(url)
                allowed = (302, 401, 403, 405) if is_api(name) else (302, 403, 405)
                assert response.status_code in allowed, (name, method,
                                                         response.status_code)
                if response.status_code == 302:
                    assert response["Location"].startswith("/accounts/login/"), name

    def test_it_refuses_every_post_without_a_csrf_token(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)  # an operator: only the token is missing
        before = database_state()
        for name, url in self.urls:
            if name in ALWAYS_NOT_FOUND:
                continue
            response = client.post(url, {"size": 2, "action": "pause"})
            allowed = (401, 403, 405) if is_api(name) else (403, 405)
            assert response.status_code in allowed, (name, response.status_code)
        assert database_state() == before

    def test_it_lets_no_viewer_change_anything(self) -> None:
        client = Client()
        client.force_login(self.bob)
        before = database_state()
        allowed = []
        for name, url in self.urls:
            if name in PUBLIC or name in ALWAYS_NOT_FOUND or name in ("logout",
                                                                      "password_change"):
                continue
            response = client.post(url, {"size": 2, "action": "start",
                                         "batch": self.batch.pk})
            refused = (401, 403, 405) if is_api(name) else (403, 405)
            # A viewer may make a token of their own (this POST has no name for it: 400).
            if name == "api_tokens" and response.status_code == 400:
                continue
            if response.status_code not in refused:
                allowed.append((name, response.status_code))
        assert allowed == [], allowed
        assert database_state() == before

    def test_it_changes_nothing_on_get_whoever_asks(self) -> None:
        before = database_state()
        for user in (self.root, self.alice, self.bob, self.charlie):
            client = Client()
            client.force_login(user)
            for name, url in self.urls:
                if name == "logout":
                    continue
                response = client.get(url)
                assert response.status_code < 500, (name, user.username)
        assert database_state() == before
