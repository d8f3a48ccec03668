"""The Site sessions page and the dashboard's session section (no browser needed)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from poolsite.batches.models import ControlAction
from poolsite.demo_erp.server import DemoSite
from poolsite.sessions import store
from poolsite.sessions.health import site_sessions
from poolsite.sessions.models import SiteSession
from poolsite.supervisor.models import PoolPlan
from tests.poolsite.dashboard_personas import operator, viewer

pytestmark = pytest.mark.django_db
SECRET_VALUE = "cookie-value-that-must-never-show"


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path / "data"
    return Path(settings.DATA_DIR)


def client_for(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def saved_demo_session() -> SiteSession:
    state = DemoSite(secret="s").storage_state()
    state["cookies"][0]["value"] = SECRET_VALUE
    return store.save_storage_state("demo", state, username="tester",
                                    base_url="http://127.0.0.1:8001")


def test_it_shows_viewers_the_status_without_controls() -> None:
    saved_demo_session()
    page = client_for(viewer()).get("/site-sessions/").content.decode()
    assert "storage state" in page and "tester" in page
    assert "Upload a session" not in page and "/delete/" not in page
    assert SECRET_VALUE not in page
    assert Client().get("/site-sessions/").status_code == 302


def test_it_deletes_a_session_for_an_operator_only(data_dir: Path) -> None:
    saved = saved_demo_session()
    assert saved.full_path.is_file()
    assert client_for(viewer()).post("/site-sessions/demo/delete/").status_code == 403
    strict = client_for(operator(), enforce_csrf_checks=True)
    assert strict.post("/site-sessions/demo/delete/").status_code == 403
    page = client_for(operator("olga")).post("/site-sessions/demo/delete/",
                                             follow=True).content.decode()
    assert "Session for demo deleted." in page
    assert not saved.full_path.exists() and not SiteSession.objects.exists()
    assert list(ControlAction.objects.values_list("action", "outcome", "username")) == [
        ("delete_session", "done", "olga"), ("upload_session", "done", "tester")]


def test_it_refuses_an_expired_cookie_file_naming_the_problem() -> None:
    state = DemoSite(secret="s").storage_state()
    state["cookies"][0].update(value=SECRET_VALUE, expires=time.time() - 3600)
    response = client_for(operator()).post("/site-sessions/upload/", {
        "site": "demo", "file": SimpleUploadedFile("state.json", json.dumps(state).encode())})
    page = response.content.decode()
    assert response.status_code == 400
    assert "1 cookie(s) already expired, e.g. cookie #1 &#x27;demo_session&#x27;" in page
    assert SECRET_VALUE not in page and not SiteSession.objects.exists()
    refusal = ControlAction.objects.get()
    assert (refusal.action, refusal.outcome) == ("upload_session", "refused")
    assert "already expired" in refusal.outcome_message
    assert SECRET_VALUE not in json.dumps(refusal.arguments) + refusal.outcome_message


def test_the_dashboard_shows_each_site_session_and_how_to_replace_it() -> None:
    saved_demo_session()
    PoolPlan.current()
    PoolPlan.objects.update(state=PoolPlan.State.PAUSED,
                            reason="LOGIN_REQUIRED: the PO page showed the sign-in page")
    page = client_for(viewer()).get("/").content.decode()
    assert "<b>demo</b>: not checked yet · captured " in page
    assert "by tester · 1 cookie · earliest expiry" in page
    assert "<b>coupa</b>: not signed in: no session saved" in page
    assert "Replace the session" in page and 'href="/site-sessions/"' in page
    assert SECRET_VALUE not in page


def test_a_session_the_site_revoked_leads_with_the_probe_answer_not_its_last_success(
        ) -> None:
    saved = saved_demo_session()
    now = timezone.now()
    SiteSession.objects.filter(pk=saved.pk).update(
        last_ok_at=now - timedelta(hours=1), last_probe_at=now - timedelta(minutes=2),
        last_probe_ok=False, last_probe_message="the PO page showed the sign-in page")
    (row,) = [r for r in site_sessions() if r["site"] == "demo"]
    assert (row["state"], row["verdict"]) == ("signed_out", "signed out")
    assert row["summary"].startswith(f"signed out (checked {row['checked']}: the PO page "
                                     "showed the sign-in page) · it last worked ")
    assert "last signed in" not in row["summary"]
    page = client_for(viewer()).get("/").content.decode()
    assert (f'<b>demo</b>: <span class="verdict">signed out</span> (checked '
            f'<time datetime="{row["checked_iso"]}">') in page


def test_session_files_are_owner_only(data_dir: Path) -> None:
    saved = saved_demo_session()
    modes = [p.stat().st_mode & 0o777 for p in (data_dir / "sessions", saved.full_path.parent,
                                                 saved.full_path)]
    assert modes == [0o700, 0o700, 0o600]
    assert store.session_for("demo") == (str(saved.full_path), None)
    assert store.session_for("coupa") == (None, None)
