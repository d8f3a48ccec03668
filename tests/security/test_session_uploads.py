"""Hostile site-session files are refused cleanly, and an upload replaces the working
session only once a probe of the new one says signed in.

The attacks: a JSON nested 200,000 levels deep gave HTTP 500 (RecursionError); a
cookies.txt with NUL bytes and `../` in cookie names was accepted and replaced the
working session. The probe here is real: a throw-away Chromium on the demo site.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from poolsite.batches.models import ControlAction
from poolsite.demo_erp.server import DemoSite
from poolsite.sessions import store
from poolsite.sessions.cookie_files import SessionFileError, storage_state_from_upload
from poolsite.sessions.health import presets
from poolsite.sessions.models import SiteSession
from tests.poolsite.dashboard_personas import operator

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]


@pytest.fixture
def client(settings: Any, tmp_path: Path) -> Client:
    settings.DATA_DIR = tmp_path / "data"
    client = Client()
    client.force_login(operator())
    return client


@pytest.fixture
def working(site: DemoSite) -> SiteSession:
    """A signed-in session for the demo site, saved as a capture would."""
    return store.save_storage_state("demo", site.storage_state(), username="tester",
                                    base_url=site.base_url,
                                    source=SiteSession.Source.CAPTURE,
                                    action=ControlAction.Action.CAPTURE_SESSION)


def upload(client: Client, site: DemoSite, name: str, data: bytes) -> tuple[int, str]:
    response = client.post("/site-sessions/upload/", {
        "site": "demo", "base_url": site.base_url,
        "file": SimpleUploadedFile(name, data)}, follow=True)
    return response.status_code, response.content.decode()


def netscape(site: DemoSite, name: str, value: str = "v") -> bytes:
    return (f"# Netscape HTTP Cookie File\n{site.host}\tFALSE\t/\tFALSE\t0\t{name}\t{value}\n"
            ).encode()


def assert_unchanged(working: SiteSession) -> None:
    saved = SiteSession.objects.get(site="demo")
    assert saved.captured_at == working.captured_at and saved.source == "capture"
    assert saved.full_path.read_text() == working.full_path.read_text()


def test_a_json_nested_200000_levels_deep_is_refused_not_a_500(
        client: Client, site: DemoSite, working: SiteSession) -> None:
    status, page = upload(client, site, "deep.json", b"[" * 200_000 + b"]" * 200_000)
    assert status == 400
    assert "nested more than 10 levels deep" in page
    deep_object = b'{"cookies": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001
    status, page = upload(client, site, "deep.json", deep_object)
    assert status == 400 and "nested more than" in page
    assert_unchanged(working)


def test_nul_bytes_and_path_names_in_a_cookies_txt_are_refused(
        client: Client, site: DemoSite, working: SiteSession) -> None:
    for data, problem in (
            (netscape(site, "sid\x00x"), "NUL bytes"),
            (netscape(site, "../../sid"), "the name is not a cookie name"),
            (netscape(site, "a b"), "the name is not a cookie name"),
            (netscape(site, "sid", "x;y"), "the value has characters"),
            (netscape(site, "sid", "x\x1by"), "the value has characters")):
        status, page = upload(client, site, "cookies.txt", data)
        assert status == 400, data
        assert problem in page, (data, page[:2000])
    assert_unchanged(working)
    refusals = ControlAction.objects.filter(action="upload_session", outcome="refused")
    assert refusals.count() == 5


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("domain", "127.0.0.1/../x", "the domain is not a host name"),
    ("domain", "127.0.0.1\x00", "the domain is not a host name"),
    ("path", "x", "the path must start with '/'"),
    ("path", "/\r\nSet-Cookie: a=b", "the path must start with '/'"),
    ("name", "", "has no name"),
    ("name", "=", "the name is not a cookie name"),
    ("value", '"a"b"', "the value has characters"),
])
def test_every_cookie_field_is_checked(site: DemoSite, field: str, value: str,
                                       problem: str) -> None:
    state = site.storage_state()
    state["cookies"][0][field] = value
    with pytest.raises(SessionFileError, match=problem.replace("(", r"\(")):
        storage_state_from_upload(json.dumps(state).encode(), presets()["demo"])


def test_counts_are_bounded(site: DemoSite) -> None:
    state = site.storage_state()
    state["origins"] = [{"origin": site.base_url, "localStorage": [{"name": "a",
                                                                    "value": "b"}]}] * 201
    with pytest.raises(SessionFileError, match="201 origins"):
        storage_state_from_upload(json.dumps(state).encode(), presets()["demo"])


def test_a_signed_out_session_does_not_replace_the_working_one(
        client: Client, site: DemoSite, working: SiteSession) -> None:
    stale = site.storage_state()
    stale["cookies"][0]["value"] = "not-a-session-of-this-site"
    status, page = upload(client, site, "state.json", json.dumps(stale).encode())
    assert status == 400
    assert "the uploaded session is not signed in" in page
    assert "the saved session is unchanged" in page
    assert_unchanged(working)
    assert not list(working.full_path.parent.glob(".incoming-*"))  # nothing left behind
    refusal = ControlAction.objects.get(action="upload_session")
    assert refusal.outcome == "refused" and "not signed in" in refusal.outcome_message


def test_a_signed_in_session_replaces_it_and_is_marked_checked(
        client: Client, site: DemoSite, working: SiteSession) -> None:
    fresh = site.storage_state()
    status, page = upload(client, site, "state.json", json.dumps(fresh).encode())
    assert status == 200
    assert "Session for demo saved: 1 cookie(s); probe: signed in" in page
    saved = SiteSession.objects.get(site="demo")
    assert saved.source == "upload" and saved.last_probe_ok is True
    assert json.loads(saved.full_path.read_text())["cookies"][0]["value"] == \
        fresh["cookies"][0]["value"]
