"""SSRF through host names: a name that resolves to this machine is not a public host.

The allow-list used to look at IP literals only: with the `generic` preset (any public
host), a row whose URL named a host resolving to 127.0.0.1 was fetched by the workers,
sub-requests and all, and a viewer could read the internal page in the evidence. Here
the browser resolves `intranet.example` to the canary's loopback address (as a DNS
entry would) and so does our resolver; the page must never be fetched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from pool_core import sites
from pool_core.browser import launch_args
from pool_core.config import JobEnv
from pool_core.messages import POStatus, Task
from pool_core.processing import process_po
from pool_core.sites import load_preset
from poolsite.demo_erp.server import DemoSite

NAME = "intranet.example"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch, site: DemoSite) -> None:
    """Our resolver answers what the browser's does: the name is the canary's address."""
    real = sites.resolve
    monkeypatch.setattr(sites, "resolve", lambda host: (
        (site.canary_host,) if host == NAME else real(host)))


@pytest.fixture
def page(browser_path: str, site: DemoSite) -> Iterator[Page]:
    rules = f"--host-resolver-rules=MAP {NAME} {site.canary_host}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path,
                                     args=[*launch_args(), rules])
        yield browser.new_context(accept_downloads=True).new_page()
        browser.close()


def test_a_name_resolving_to_loopback_is_refused_in_the_browser(
        dns: None, page: Page, site: DemoSite, tmp_path: Path) -> None:
    port = site.canary_url.rsplit(":", 1)[1]
    job = JobEnv(worker_id=1, output_root=str(tmp_path / "out"),
                 work_root=str(tmp_path / "work"), evidence_dir=str(tmp_path / "evidence"),
                 site=load_preset("generic"), nav_timeout_s=10.0, download_timeout_s=5.0)
    task = Task(key="k", po_number="PO1", supplier="S", amount=Decimal(1),
                url=f"http://{NAME}:{port}/internal-admin")
    result = process_po(page, task, job)
    assert (result.status, result.reason) == (POStatus.FAILED, "BLOCKED_URL")
    assert "resolves to 127.0.0.2" in result.message
    assert site.canary_hits == 0  # never fetched, so nothing for a viewer to read


def test_the_demo_which_allows_private_targets_is_not_resolved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []

    def resolve(host: str) -> tuple[str, ...]:
        looked_up.append(host)
        return ()

    monkeypatch.setattr(sites, "resolve", resolve)
    demo = load_preset("demo")
    assert demo.check_resolved("http://127.0.0.1:8001/order_headers/1") is None
    generic = dataclasses.replace(load_preset("generic"))
    assert generic.check_resolved("https://example.com/po/1") is None
    assert looked_up == ["example.com"]


@pytest.mark.django_db
def test_an_upload_row_naming_such_a_host_is_refused_with_its_row(dns: None) -> None:
    from poolsite.batches.batch_import import parse_upload

    data = (b"po_number,url\nPO1,https://example.com/po/1\n"
            b"PO2,http://" + NAME.encode() + b"/po/2\n")
    upload = parse_upload(data, filename="rows.csv", preset="generic")
    assert not upload.ok
    (problem,) = upload.problems
    assert (problem.row, problem.column) == (3, "B (url)")
    assert "resolves to 127.0.0.2" in problem.message
