"""A script's whole batch through the HTTP API alone: token → upload → start → wait →
results → ZIP, against a real `runpool` with real workers on the demo site.

    this test ─ urllib (Bearer token) ─▶ runpool (daphne + supervisor) ─▶ 2 workers
                                                                        └▶ demo site

The token comes from `manage.py create_api_token` (as an admin would make one for a
service account); everything after that is plain HTTP, no browser and no database.
Then the README's example script (examples/api_batch.py) runs a second batch the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from tests.runpool_harness import (
    ROOT,
    Deployment,
    deployment,
    expected_files,
    serving_runpool,
    wait_for,
)

SITE = "Demo site"
LONG = 180  # s: workers start Chromium on a shared 2-core machine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

MAKE_USERS = f"""
from django.contrib.auth.models import Group, User
for name, role in (("erp", "operators"), ("auditor", "viewers")):
    User.objects.create_user(name).groups.add(Group.objects.get(name=role))
from poolsite.batches.models import Site
Site.ensure({SITE!r}, "demo", "%s", via="test")
"""


@pytest.fixture
def live(site: DemoSite, tmp_path: Path) -> Iterator[tuple[Deployment, str]]:
    deploy = deployment(tmp_path, site)
    deploy.manage("shell", "-c", MAKE_USERS % site.base_url)
    with serving_runpool(deploy, "--pool-size", "2", "--storage-state",
                         str(tmp_path / "storage-state.json")) as url:
        yield deploy, url


def call(url: str, token: str, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, bytes]:
    request = urllib.request.Request(f"{url}/api{path}", data=body, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def call_json(url: str, token: str, method: str, path: str,
              data: dict[str, Any] | None = None, expect: int = 200) -> Any:
    status, body = call(url, token, method, path,
                        None if data is None else json.dumps(data).encode())
    assert status == expect, (method, path, status, body[:500])
    return json.loads(body)


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             .encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\n\r\n'.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def csv_of(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["po_number", "supplier", "url", "amount"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def token_for(deploy: Deployment, user: str) -> str:
    return deploy.manage("create_api_token", user, "--name", "e2e").stdout.strip()


def test_a_whole_batch_through_the_api_alone(live: tuple[Deployment, str], site: DemoSite,
                                             tmp_path: Path) -> None:
    deploy, url = live
    token, viewer = token_for(deploy, "erp"), token_for(deploy, "auditor")
    pos = [*catalog.demo_batch(site.base_url, 3),
           catalog.po_dict(site.base_url, catalog.NOT_FOUND)]
    numbers = [po["po_number"] for po in pos]

    # A file with a bad row is refused whole, each problem located, as JSON.
    body, kind = multipart({"site": SITE}, "bad.csv", csv_of(pos) + b"PO 9,Acme,,x\n")
    status, answer = call(url, token, "POST", "/batches/upload", body, kind)
    assert status == 400, answer
    assert {p["row"] for p in json.loads(answer)["problems"]} == {6}
    # A viewer's token reads but neither uploads nor starts.
    body, kind = multipart({"site": SITE, "name": "weekly"}, "weekly.csv", csv_of(pos))
    assert call(url, viewer, "POST", "/batches/upload", body, kind)[0] == 403

    batch = json.loads(call(url, token, "POST", "/batches/upload", body, kind)[1])
    assert batch["po_count"] == 4 and batch["counts"]["QUEUED"] == 4, batch
    assert call(url, viewer, "POST", "/pool/start",
                json.dumps({"batch": batch["id"]}).encode())[0] == 403
    started = call_json(url, token, "POST", "/pool/start", {"batch": batch["id"]},
                        expect=202)
    assert started["action"] == "start" and started["plan_version"]

    def done() -> bool:
        return call_json(url, viewer, "GET", f"/batches/{batch['id']}")["summary"][
            "pending"] == 0

    wait_for(done, LONG, "the batch to finish", interval=1.0)
    status_now = call_json(url, viewer, "GET", "/pool/status")
    assert status_now["batch"]["id"] == batch["id"] and status_now["batch"]["done"] == 4

    code, results = call(url, viewer, "GET", f"/batches/{batch['id']}/results.csv")
    assert code == 200
    rows = list(csv.DictReader(io.StringIO(results.decode("utf-8-sig"))))
    assert {r["po_number"]: r["status"] for r in rows} == {
        n: catalog.expected(n).status for n in numbers}
    code, xlsx = call(url, viewer, "GET", f"/batches/{batch['id']}/results.xlsx")
    assert code == 200 and xlsx.startswith(b"PK")

    code, archive = call(url, viewer, "GET", f"/batches/{batch['id']}/documents.zip")
    assert code == 200
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        zipped = {hashlib.sha256(zf.read(name)).hexdigest() for name in zf.namelist()}
    expected = {sha for n in numbers for sha in expected_files(n)}
    assert expected and expected <= zipped

    actions = deploy.query("SELECT action, outcome, username, arguments FROM "
                           "batches_controlaction WHERE action IN ('upload', 'start')")
    assert [(a, u, json.loads(args)["via"]) for a, _, u, args in actions] == [
        ("upload", "erp", "api"), ("start", "erp", "api")]

    # The README's example script, end to end on a second small batch.
    second = tmp_path / "second.csv"
    second.write_bytes(csv_of(catalog.demo_batch(site.base_url, 2, start=200050)))
    out = tmp_path / "out"
    wait_for(lambda: call_json(url, viewer, "GET", "/pool/status")["plan"]["state"] == "idle",
             60, "the pool to go idle")
    script = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "api_batch.py"), str(second), "--site", SITE,
         "--out", str(out), "--url", url], env={**deploy.env, "POOLSITE_TOKEN": token},
        capture_output=True, text=True, timeout=LONG, stdin=subprocess.DEVNULL)
    assert script.returncode == 0, script.stdout + script.stderr
    saved = sorted(p.name for p in out.iterdir())
    assert len(saved) == 2 and saved[0].endswith("-documents.zip"), saved
    assert "2/2 done" in script.stdout, script.stdout
    print(script.stdout)  # shown with -s: what the README's script prints
