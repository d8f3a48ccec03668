"""Uploaded session files: the three formats become one storage state, or a clear refusal."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pool_core.sites import load_preset
from poolsite.demo_erp.server import DemoSite
from poolsite.sessions.cookie_files import SessionFileError, storage_state_from_upload

DEMO = load_preset("demo")
COUPA = load_preset("coupa")
LATER = int(time.time()) + 86400


def test_it_accepts_a_playwright_storage_state() -> None:
    cookie = {"name": "sid", "value": "v-1", "domain": "127.0.0.1", "path": "/",
              "expires": LATER, "httpOnly": True, "secure": False, "sameSite": "Lax"}
    state: dict[str, Any] = {
        "cookies": [cookie],
        "origins": [{"origin": "http://127.0.0.1:8001",
                     "localStorage": [{"name": "k", "value": "x"}]}]}
    result = storage_state_from_upload(json.dumps(state).encode(), DEMO)
    assert result["cookies"][0] | {"value": ""} == state["cookies"][0] | {"value": ""}
    assert result["origins"] == state["origins"]


def test_it_converts_a_netscape_cookies_txt() -> None:
    text = ("# Netscape HTTP Cookie File\n"
            f"#HttpOnly_.acme.coupahost.com\tTRUE\t/\tTRUE\t{LATER}\tsid\tv-2\n"
            "acme.coupahost.com\tFALSE\t/app\tFALSE\t0\tlang\ten\n")
    cookies = storage_state_from_upload(text.encode(), COUPA)["cookies"]
    assert [(c["domain"], c["path"], c["httpOnly"], c["secure"], c["expires"])
            for c in cookies] == [(".acme.coupahost.com", "/", True, True, LATER),
                                  ("acme.coupahost.com", "/app", False, False, -1)]


def test_it_converts_a_cookie_extension_export() -> None:
    export = [{"domain": "acme.coupahost.com", "hostOnly": False, "name": "sid",
               "value": "v-3", "path": "/", "expirationDate": LATER + 0.5, "secure": True,
               "httpOnly": True, "sameSite": "no_restriction", "session": False},
              {"domain": "acme.coupahost.com", "hostOnly": True, "name": "csrf",
               "value": "v-4", "path": "/", "secure": False, "httpOnly": False,
               "sameSite": "unspecified", "session": True, "storeId": "0"}]
    cookies = storage_state_from_upload(json.dumps(export).encode(), COUPA)["cookies"]
    assert [(c["domain"], c["sameSite"], c["expires"]) for c in cookies] == [
        (".acme.coupahost.com", "None", LATER + 0.5), ("acme.coupahost.com", "Lax", -1)]


@pytest.mark.parametrize(("data", "problem"), [
    (b"", "not a storage-state JSON"),
    (b"{\"cookies\": [", "the JSON is malformed"),
    (b"{\"origins\": []}", 'needs a "cookies" list'),
    (b"[{\"domain\": \"127.0.0.1\", \"value\": \"x\"}]", "cookie #1 has no name"),
    (b"# Netscape\n127.0.0.1\tFALSE\t/\n", "line 2 of the cookies.txt has 3"),
    (b"{\"cookies\": []}", "holds no cookies"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_it_refuses_malformed_files_saying_what_is_wrong(data: bytes, problem: str) -> None:
    with pytest.raises(SessionFileError, match=problem):
        storage_state_from_upload(data, DEMO)


def test_it_refuses_cookies_for_hosts_off_the_allow_list() -> None:
    export = [{"domain": ".evil.example", "name": "sid", "value": "secret-foreign",
               "path": "/"}, {"domain": "127.0.0.1", "name": "ok", "value": "x"}]
    with pytest.raises(SessionFileError) as info:
        storage_state_from_upload(json.dumps(export).encode(), DEMO)
    message = str(info.value)
    assert "outside the allow-list of site 'demo': evil.example" in message
    assert "secret-foreign" not in message


def test_it_refuses_expired_cookies_naming_them() -> None:
    state = DemoSite(secret="s").storage_state()
    state["cookies"][0]["expires"] = 1_700_000_000
    with pytest.raises(SessionFileError) as info:
        storage_state_from_upload(json.dumps(state).encode(), DEMO)
    assert "cookie #1 'demo_session' for 127.0.0.1 expired 2023-11-14 22:13 UTC" in str(
        info.value)
    assert state["cookies"][0]["value"] not in str(info.value)


def test_demo_sessions_survive_a_restart_with_the_same_secret() -> None:
    first = DemoSite(secret="stable")
    token = first.new_session()
    assert DemoSite(secret="stable").is_session(token)
    assert not DemoSite(secret="other").is_session(token)
    assert not first.is_session(token[:-1] + ("0" if token[-1] != "0" else "1"))
    first.expire_sessions()
    assert not first.is_session(token) and first.is_session(first.new_session())
