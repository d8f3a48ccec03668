"""Site presets are data, and the allow-list refuses what a worker must never open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pool_core.errors import UnsafeURLError
from pool_core.sites import load_preset, load_presets, preset_from_dict

REFUSED_SCHEMES = [
    "file:///etc/passwd", "chrome://settings", "data:text/html,<h1>x</h1>",
    "javascript:alert(1)", "about:blank", "view-source:http://127.0.0.1/",
    "ftp://127.0.0.1/x", "//127.0.0.1/x",
]
PRIVATE = [
    "http://127.0.0.1/", "http://localhost:8000/", "http://10.1.2.3/", "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
    "http://0x7f000001/", "http://2130706433/", "http://127.1/", "http://0.0.0.0/",
    "http://app.localhost/",
]


def test_it_ships_the_coupa_generic_and_demo_presets() -> None:
    presets = load_presets()
    assert {"coupa", "generic", "demo"} <= set(presets)
    coupa = presets["coupa"].with_base_url("https://acme.coupahost.com/")
    assert coupa.build_url("PO15262984") == "https://acme.coupahost.com/order_headers/15262984"
    assert coupa.error_markers and coupa.requisition_selector
    assert [s.name for s in coupa.sources_for("po")] == ["header", "comments"]
    assert all(s.required for s in coupa.sources_for("requisition"))


def test_a_tenant_adds_its_own_host_and_download_hosts_to_the_allow_list() -> None:
    coupa = load_preset("coupa").for_tenant("https://buy.acme-corp.example/",
                                            ("files.acme-corp.example", "*.cdn.example"))
    assert coupa.base_url == "https://buy.acme-corp.example"
    assert coupa.check_url("https://buy.acme-corp.example/order_headers/1") is None
    assert coupa.check_url("https://files.acme-corp.example/a.pdf") is None
    assert coupa.check_url("https://eu.cdn.example/a.pdf") is None
    assert coupa.check_url("https://acme-corp.example/") is not None


def test_the_attachment_selectors_shorthand_is_one_source_over_the_whole_page() -> None:
    generic = load_preset("generic")
    (source,) = generic.sources_for("po")
    assert source.container == "body" and "a[download]" in source.items


@pytest.mark.parametrize(("source", "error"), [
    ({"name": "h", "container": "div", "items": "a", "colour": "red"}, "unknown attachment"),
    ({"name": "h", "container": "div", "items": "a", "fetch": "telepathy"}, "fetch must be"),
    ({"name": "h", "container": "", "items": "a"}, "has no container"),
    ({"name": "h", "container": "div", "items": "a", "pages": ["invoice"]}, "pages must be"),
])
def test_a_preset_with_a_bad_attachment_source_is_refused_loudly(
        source: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        preset_from_dict({"name": "acme", "attachment_sources": [source]})


@pytest.mark.parametrize("url", REFUSED_SCHEMES)
@pytest.mark.parametrize("preset", ["demo", "generic", "coupa"])
def test_it_refuses_non_http_schemes_with_a_clear_error(url: str, preset: str) -> None:
    site = load_preset(preset)
    with pytest.raises(UnsafeURLError, match="refused URL"):
        site.require_url(url)


@pytest.mark.parametrize("url", PRIVATE)
def test_it_keeps_the_generic_site_off_loopback_and_private_ranges(url: str) -> None:
    generic = load_preset("generic")
    assert generic.check_url(url) is not None
    assert generic.check_url("https://example.com/po/1") is None


def test_the_demo_allows_only_its_own_loopback_address() -> None:
    demo = load_preset("demo").with_base_url("http://127.0.0.1:8123")
    assert demo.check_url("http://127.0.0.1:8123/order_headers/1") is None
    assert "allow-list" in (demo.check_url("http://127.0.0.2:8123/") or "")
    assert demo.check_url("http://10.0.0.1/") is not None
    assert demo.po_url("PO100002") == "http://127.0.0.1:8123/order_headers/100002"


def test_coupa_only_opens_coupa_hosts() -> None:
    coupa = load_preset("coupa")
    assert coupa.check_url("https://acme.coupahost.com/order_headers/1") is None
    assert coupa.check_url("https://evil.example/order_headers/1") is not None
    assert coupa.check_url("https://acme.coupahost.com.evil.example/") is not None


def test_a_site_is_added_by_dropping_a_json_file(tmp_path: Path) -> None:
    (tmp_path / "acme.json").write_text(json.dumps({
        "name": "acme", "base_url": "https://erp.acme.example",
        "url_template": "{base}/po/{po_number}", "allowed_hosts": ["erp.acme.example"],
        "attachment_selectors": ["a.doc"],
        "error_markers": [{"status": "PO_NOT_FOUND", "texts": ["No such order"]}],
    }))
    acme = load_preset("acme", extra_dirs=(tmp_path,))
    assert acme.po_url("PO-7") == "https://erp.acme.example/po/PO-7"
    assert acme.error_markers[0].texts == ("No such order",)
    (tmp_path / "typo.json").write_text(json.dumps({"name": "typo", "alowed_hosts": []}))
    with pytest.raises(ValueError, match="alowed_hosts"):
        load_presets((tmp_path,))
