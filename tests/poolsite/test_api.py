"""The HTTP API with Django's test client: tokens, roles, limits, uploads, controls."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from django.core.cache import cache
from django.test import Client, override_settings
from django.urls import reverse

from poolsite.api.models import ApiToken, digest
from poolsite.batches.models import Batch, ControlAction
from poolsite.request_limits import body_limit
from poolsite.supervisor.models import PoolPlan
from tests.poolsite.base import BaseTestCase

CSV = b"po_number,supplier,amount\nPO200001,Acme,10.50\nPO200002,Globex,20\n"


class ApiTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        cache.clear()  # lock-outs and rate counts
        self.addCleanup(cache.clear)
        self.site = self.make_site()
        _, self.operator = ApiToken.issue(self.alice, "script")
        _, self.viewer = ApiToken.issue(self.bob, "viewer script")

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return getattr(Client(), method)(path, headers=headers, **kwargs)

    def upload(self, token: str, data: bytes = CSV, name: str = "weekly.csv",
               **fields: str) -> Any:
        file = io.BytesIO(data)
        file.name = name
        return self.call("post", "/api/batches/upload", token,
                         data={"file": file, "site": self.site.name, **fields})


class TokenTests(ApiTestCase):
    def test_only_the_hash_and_a_prefix_are_stored(self) -> None:
        token = ApiToken.objects.get(user=self.alice)
        assert self.operator.startswith("pst_") and len(self.operator) > 40
        assert token.secret_sha256 == digest(self.operator)
        assert self.operator.startswith(token.prefix) and self.operator not in str(
            ApiToken.objects.filter(pk=token.pk).values().get())
        created = ControlAction.objects.filter(action="create_api_token", user=self.alice)
        assert created.get().arguments["token"] == token.prefix

    def test_no_bad_or_revoked_token_is_401_and_a_good_one_acts_as_its_user(self) -> None:
        assert self.call("get", "/api/me").status_code == 401
        response = self.call("get", "/api/me", "pst_not-a-token")
        assert response.status_code == 401
        assert "Bearer" in response.json()["detail"]
        assert response.headers["WWW-Authenticate"] == "Bearer"
        me = self.call("get", "/api/me", self.operator).json()
        assert me["user"] == "alice" and me["can_operate"] and me["roles"] == ["operators"]
        ApiToken.objects.get(user=self.alice).revoke(self.alice)
        assert self.call("get", "/api/me", self.operator).status_code == 401
        assert ControlAction.objects.filter(action="revoke_api_token").count() == 1

    def test_an_inactive_users_token_stops_working(self) -> None:
        self.bob.is_active = False
        self.bob.save()
        assert self.call("get", "/api/batches", self.viewer).status_code == 401

    def test_the_tokens_page_creates_shows_once_and_revokes(self) -> None:
        client = Client()
        client.force_login(self.bob)
        page = client.post(reverse("api_tokens"), {"name": "ERP export"})
        assert page.status_code == 200
        secret = page.context["secret"]
        assert secret in page.content.decode()
        assert secret not in client.get(reverse("api_tokens")).content.decode()
        assert self.call("get", "/api/batches", secret).status_code == 200
        token = ApiToken.objects.get(name="ERP export")
        # Nobody else revokes it (but an admin) ...
        other = Client()
        other.force_login(self.alice)
        assert other.post(reverse("api_token_revoke", args=[token.pk])).status_code == 403
        # ... its owner does, with the CSRF token the page carries.
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(self.bob)
        assert strict.post(reverse("api_token_revoke", args=[token.pk])).status_code == 403
        assert client.post(reverse("api_token_revoke", args=[token.pk])).status_code == 302
        assert self.call("get", "/api/batches", secret).status_code == 401


class AdminTests(ApiTestCase):
    def test_an_admin_sees_every_token_and_revokes_them_audited(self) -> None:
        client = Client()
        client.force_login(self.root)
        page = client.get("/admin/api/apitoken/")
        assert page.status_code == 200
        assert "viewer script" in page.content.decode() and "script" in page.content.decode()
        assert self.operator not in page.content.decode()
        ids = list(ApiToken.objects.values_list("pk", flat=True))
        client.post("/admin/api/apitoken/", {"action": "revoke", "_selected_action": ids})
        assert not ApiToken.objects.active().exists()
        revoked = ControlAction.objects.filter(action="revoke_api_token", user=self.root)
        assert revoked.count() == 2 and all(r.arguments["via"] == "admin" for r in revoked)
        assert self.call("get", "/api/me", self.viewer).status_code == 401


@override_settings(POOL_API_BAD_TOKEN_LIMIT=3, POOL_API_RATE_PER_MINUTE=5)
class LimitTests(ApiTestCase):
    def test_a_token_over_its_rate_gets_429_with_retry_after(self) -> None:
        codes = [self.call("get", "/api/me", self.viewer).status_code for _ in range(6)]
        assert codes == [200] * 5 + [429]
        response = self.call("get", "/api/me", self.viewer)
        assert 0 < int(response.headers["Retry-After"]) <= 60
        assert "5 requests a minute" in response.json()["detail"]
        # Per token: another one is not held up.
        assert self.call("get", "/api/me", self.operator).status_code == 200

    def test_repeated_bad_tokens_lock_the_address_out_good_tokens_included(self) -> None:
        for _ in range(3):
            assert self.call("get", "/api/me", "pst_guess").status_code == 401
        response = self.call("get", "/api/me", self.operator)
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 60
        assert "too many bad API tokens" in response.json()["detail"]
        other = Client(REMOTE_ADDR="10.0.0.9")
        assert other.get("/api/me", headers={
            "Authorization": f"Bearer {self.operator}"}).status_code == 200


class RoleTests(ApiTestCase):
    def test_a_viewer_reads_but_cannot_upload_or_start(self) -> None:
        batch = self.make_batch()
        assert self.call("get", "/api/batches", self.viewer).status_code == 200
        assert self.call("get", f"/api/batches/{batch.pk}", self.viewer).status_code == 200
        assert self.call("get", "/api/pool/status", self.viewer).status_code == 200
        assert self.upload(self.viewer).status_code == 403
        response = self.call("post", "/api/pool/start", self.viewer,
                             data={"batch": batch.pk}, content_type="application/json")
        assert response.status_code == 403
        assert "operators only" in response.json()["detail"]
        assert Batch.objects.count() == 1
        assert not ControlAction.objects.filter(action="start").exists()
        assert PoolPlan.current().state == PoolPlan.State.IDLE

    def test_a_user_without_a_role_sees_nothing(self) -> None:
        _, secret = ApiToken.issue(self.charlie, "x")
        assert self.call("get", "/api/batches", secret).status_code == 403
        assert self.call("get", "/api/pool/status", secret).status_code == 403


class UploadTests(ApiTestCase):
    def test_an_upload_creates_the_batch_and_is_audited_as_api(self) -> None:
        response = self.upload(self.operator, name="weekly.csv", notes="w49")
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["name"] == "weekly" and body["po_count"] == 2 and body["site"] == "Demo site"
        assert body["counts"]["QUEUED"] == 2 and body["summary"]["pending"] == 2
        batch = Batch.objects.get(pk=body["id"])
        assert batch.uploaded_by == self.alice and batch.notes == "w49"
        record = ControlAction.objects.get(action="upload")
        assert record.batch == batch and record.arguments["via"] == "api"
        assert record.user == self.alice
        listed = self.call("get", "/api/batches", self.viewer).json()
        assert listed["count"] == 1 and listed["batches"][0]["id"] == batch.pk

    def test_row_problems_come_back_as_json_and_nothing_is_stored(self) -> None:
        bad = b"po_number,amount\nPO200001,10\nPO 2,abc\nPO200001,5\n"
        response = self.upload(self.operator, bad)
        assert response.status_code == 400
        body = response.json()
        assert body["problem_count"] >= 2 and "nothing was stored" in body["detail"]
        rows = {(p["row"], p["column"]) for p in body["problems"]}
        assert (3, "A (po_number)") in rows and (3, "B (amount)") in rows
        assert (4, "A (po_number)") in rows  # the duplicate
        assert any(p["value"] == "abc" for p in body["problems"])
        assert all(p["text"] for p in body["problems"])
        assert not Batch.objects.exists()

    def test_an_unknown_site_or_a_missing_file_is_a_clear_400(self) -> None:
        response = self.call("post", "/api/batches/upload", self.operator,
                             data={"file": io.BytesIO(CSV), "site": "Nope"})
        assert response.status_code == 400
        assert "no site 'Nope'" in response.json()["detail"]
        assert "Demo site" in response.json()["detail"]
        response = self.call("post", "/api/batches/upload", self.operator,
                             data={"site": self.site.name})
        assert response.status_code == 400
        assert response.json()["detail"] == "file: Field required"
        response = self.call("post", "/api/pool/scale", self.operator, data={"size": "x"},
                             content_type="application/json")
        assert response.status_code == 400 and response.json()["detail"].startswith("size:")

    @override_settings(POOL_MAX_UPLOAD_BYTES=40)
    def test_a_file_over_the_upload_limit_is_413_and_nothing_is_stored(self) -> None:
        response = self.upload(self.operator)
        assert response.status_code == 413
        assert "the limit is 40 bytes" in response.json()["detail"]
        assert not Batch.objects.exists()

    def test_the_upload_url_gets_the_upload_cap_and_the_others_the_small_one(self) -> None:
        from django.conf import settings

        upload = body_limit(reverse("api:batch_upload"))
        assert upload > settings.POOL_MAX_UPLOAD_BYTES
        for path in ("/api/pool/start", "/api/batches", "/api/pool/status", "/api/me"):
            assert body_limit(path) == settings.POOL_MAX_REQUEST_BYTES, path


class ControlTests(ApiTestCase):
    def json_post(self, path: str, token: str, data: dict[str, Any] | None = None) -> Any:
        return self.call("post", path, token, data=json.dumps(data or {}),
                         content_type="application/json")

    def test_start_pause_resume_scale_stop_go_through_request_control_with_via_api(
            self) -> None:
        batch = self.make_batch()
        start = self.json_post("/api/pool/start", self.operator, {"batch": batch.pk, "size": 2})
        assert start.status_code == 202, start.content
        assert start.json()["outcome"] == "pending" and start.json()["plan_version"]
        for action, data in (("pause", {}), ("resume", {}), ("scale", {"size": 3}),
                             ("stop", {"immediate": True})):
            response = self.json_post(f"/api/pool/{action}", self.operator, data)
            assert response.status_code == 202, (action, response.content)
        plan = PoolPlan.current()
        assert plan.state == PoolPlan.State.STOPPING and plan.pool_size == 3
        assert plan.immediate_stop
        records = list(ControlAction.objects.order_by("id").filter(
            action__in=["start", "pause", "resume", "scale", "stop"]))
        assert [r.action for r in records] == ["start", "pause", "resume", "scale", "stop"]
        assert all(r.arguments["via"] == "api" and r.user == self.alice for r in records)

    def test_a_refused_press_is_409_and_recorded_like_the_buttons(self) -> None:
        response = self.json_post("/api/pool/resume", self.operator)
        assert response.status_code == 409
        assert response.json()["detail"] == "cannot resume while the pool is idle"
        refused = ControlAction.objects.get(outcome="refused")
        assert refused.arguments == {"via": "api", "asked": "resume"}
        assert self.json_post("/api/pool/scale", self.operator, {"size": 99}).status_code == 409
        assert self.json_post("/api/pool/start", self.operator,
                              {"batch": 999}).status_code == 404

    def test_status_is_the_dashboard_snapshot(self) -> None:
        batch = self.make_batch()
        self.json_post("/api/pool/start", self.operator, {"batch": batch.pk})
        status = self.call("get", "/api/pool/status", self.viewer).json()
        assert status["plan"]["state"] == "running" and status["plan"]["batch_id"] == batch.pk
        assert status["batch"]["id"] == batch.pk and status["can_control"] is False
        assert status["allowed"] == ["pause", "stop", "scale"]


class DownloadTests(ApiTestCase):
    def test_results_and_documents_download_with_a_viewer_token(self) -> None:
        batch = self.make_batch()
        csv = self.call("get", f"/api/batches/{batch.pk}/results.csv", self.viewer)
        assert csv.status_code == 200 and csv["Content-Type"].startswith("text/csv")
        text = b"".join(csv.streaming_content).decode()
        assert "PO200000" in text
        xlsx = self.call("get", f"/api/batches/{batch.pk}/results.xlsx", self.viewer)
        assert xlsx.status_code == 200 and xlsx.content.startswith(b"PK")
        docs = self.call("get", f"/api/batches/{batch.pk}/documents.zip", self.viewer)
        assert docs.status_code == 200
        zipfile.ZipFile(io.BytesIO(b"".join(docs.streaming_content)))
        assert self.call("get", f"/api/batches/{batch.pk}/results.pdf",
                         self.viewer).status_code == 404
        missing = self.call("get", "/api/batches/999/results.csv", self.viewer)
        assert missing.status_code == 404 and "detail" in missing.json()


class DocsTests(ApiTestCase):
    def test_the_schema_and_the_docs_page_are_served_by_the_app(self) -> None:
        schema = self.call("get", "/api/openapi.json", self.viewer).json()
        paths = set(schema["paths"])
        assert {"/api/batches/upload", "/api/batches", "/api/pool/start",
                "/api/pool/status", "/api/batches/{batch_id}/documents.zip"} <= paths
        assert schema["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
        assert self.call("get", "/api/openapi.json").status_code == 302  # to sign in
        assert self.call("get", "/api/openapi.json", "pst_bad").status_code == 401
        client = Client()
        client.force_login(self.bob)
        page = client.get("/api/docs")
        html = page.content.decode()
        assert page.status_code == 200
        assert "/static/ninja/swagger-ui-bundle.js" in html
        assert "/static/ninja/swagger-ui-init.js" in html
        assert "cdn" not in html.lower() and "https://" not in html
        assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
        for asset in ("swagger-ui-bundle.js", "swagger-ui-init.js", "swagger-ui.css"):
            assert client.get(f"/static/ninja/{asset}").status_code == 200


class EveryEndpointTests(ApiTestCase):
    """Each operation of the published schema, taken from the schema itself, so a new
    endpoint is covered the day it appears: no token or a revoked one is 401, a viewer
    may not write, and an unknown batch is 404."""

    def operations(self) -> list[tuple[str, str]]:
        schema = self.call("get", "/api/openapi.json", self.viewer).json()
        return [(method, path) for path, item in schema["paths"].items()
                for method in item if method in ("get", "post")]

    def concrete(self, path: str, batch_id: int) -> str:
        return path.replace("{batch_id}", str(batch_id)).replace("{fmt}", "csv")

    def test_the_schema_is_valid_openapi(self) -> None:
        from openapi_spec_validator import validate

        schema = self.call("get", "/api/openapi.json", self.viewer).json()
        validate(schema)  # raises, naming the first problem
        assert schema["openapi"].startswith("3.")

    def test_every_operation_refuses_no_token_and_a_revoked_one(self) -> None:
        revoked_row, revoked = ApiToken.issue(self.alice, "old script")
        revoked_row.revoke(self.alice)
        operations = self.operations()
        assert len(operations) >= 12
        for method, path in operations:
            url = self.concrete(path, 1)
            for token in (None, revoked):
                cache.clear()  # the bad-token lock-out is tested on its own
                answer = self.call(method, url, token)
                assert answer.status_code == 401, (method, path, token, answer.status_code)

    def test_a_viewers_token_may_read_but_not_write_anywhere(self) -> None:
        batch = Batch.objects.create(name="b", site=self.site, site_preset="demo")
        for method, path in self.operations():
            if path.endswith("/upload"):  # a well-formed upload: refused for the role
                answer = self.upload(self.viewer)
            elif method == "post":  # a well-formed press: refused for the role
                answer = self.call(method, path, self.viewer, content_type="application/json",
                                   data={"batch": batch.pk, "size": 2, "immediate": False})
            else:
                answer = self.call(method, self.concrete(path, batch.pk), self.viewer)
            if method == "post":
                assert answer.status_code == 403, (path, answer.status_code)
            else:
                assert answer.status_code == 200, (path, answer.status_code)
        assert not ControlAction.objects.exclude(
            action__in=("create_api_token", "revoke_api_token")).exists()

    def test_an_unknown_batch_is_404_on_every_batch_operation(self) -> None:
        missing = (Batch.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        for method, path in self.operations():
            if "{batch_id}" not in path:
                continue
            answer = self.call(method, self.concrete(path, missing), self.operator)
            assert answer.status_code == 404, (path, answer.status_code)
            assert "detail" in answer.json()
