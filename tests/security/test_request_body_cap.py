"""A huge anonymous request body is refused with 413 before it costs the server memory.

The attack: `POST /accounts/login/` with a 100 MB body took runpool from 194 MB to
1.4 GB (daphne held the whole body, then CSRF parsing read it). Here runpool serves
for real and is sent 100 MB, with a Content-Length and chunked, from a generator.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from poolsite.request_limits import BodyLimitMiddleware, body_limit
from tests.runpool_harness import free_port, serving

ROOT = Path(__file__).resolve().parents[2]
BODY = 100 * 1024 * 1024
CHUNK = 256 * 1024
MAX_GROWTH = 50 * 1024 * 1024


def _body() -> Iterator[bytes]:
    block = b"a" * CHUNK
    for _ in range(BODY // CHUNK):
        yield block


class PeakRSS:
    """Sample a process's RSS every 10 ms in a thread; keep the highest."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # anything still being processed after the answer
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def runpool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """runpool serving on a free port (no demo site, no batch): (pid, port)."""
    base = tmp_path_factory.mktemp("bodycap")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(POOL_DATA_DIR=str(base / "data"), POOL_DEMO_PORT=str(free_port()))
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    log = open(base / "runpool.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "manage.py", "runpool", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not serving(f"http://127.0.0.1:{port}/accounts/login/"):
            assert proc.poll() is None, (base / "runpool.log").read_text()
            assert time.monotonic() < deadline, "runpool did not serve within 60 s"
            time.sleep(0.2)
        # Warm up what a first request loads (templates, middleware), so it is not
        # counted as growth.
        for _ in range(3):
            serving(f"http://127.0.0.1:{port}/accounts/login/")
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _post(port: int, chunked: bool) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "multipart/form-data; boundary=xyz"}
    if not chunked:
        headers["Content-Length"] = str(BODY)
    # The server may stop reading once it has answered; the answer is there.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.request("POST", "/accounts/login/", body=_body(), headers=headers,
                     encode_chunked=chunked)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100_mb_anonymous_body_gets_413_and_costs_no_memory(
        runpool: tuple[int, int], chunked: bool) -> None:
    pid, port = runpool
    before = psutil.Process(pid).memory_info().rss
    with PeakRSS(pid) as rss:
        started = time.monotonic()
        status, body = _post(port, chunked)
        took = time.monotonic() - started
    assert status == 413, body[:300]
    assert b"over the limit of 2,621,440 bytes" in body
    growth = rss.peak - before
    assert growth < MAX_GROWTH, f"runpool grew {growth / 2**20:.0f} MB"
    assert took < 30
    # And it still serves.
    assert serving(f"http://127.0.0.1:{port}/accounts/login/")


def test_a_small_body_still_reaches_the_app(runpool: tuple[int, int]) -> None:
    _, port = runpool
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/accounts/login/", body=b"username=a&password=b",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    assert response.status == 403  # Django's CSRF refusal: the app saw it


# -- the ASGI layer alone, as under any other server ------------------------------------

class FakeApp:
    """An application that reads the whole body first, as Django's handler does."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.called = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # Django: RequestAborted, no response
            self.bytes_read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _call(path: str, headers: list[tuple[bytes, bytes]], chunks: int,
                chunk: bytes = b"x" * 65536) -> tuple[FakeApp, list[Any], int]:
    app = FakeApp()
    sent: list[Any] = []
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST", "headers": headers}
    await BodyLimitMiddleware(app)(scope, receive, send)
    return app, sent, pulled


@pytest.mark.django_db
async def test_the_asgi_layer_refuses_a_declared_length_without_reading() -> None:
    app, sent, pulled = await _call("/accounts/login/",
                                    [(b"content-length", str(BODY).encode())], 1600)
    assert sent[0]["status"] == 413 and pulled == 0 and not app.called
    assert b"104,857,600 bytes" in sent[1]["body"]


@pytest.mark.django_db
async def test_the_asgi_layer_stops_a_chunked_body_past_the_limit() -> None:
    app, sent, pulled = await _call("/accounts/login/", [], 1600)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413]
    limit = body_limit("/accounts/login/")
    assert pulled == limit // 65536 + 1  # stopped at the first chunk past the limit
    assert app.bytes_read <= limit


@pytest.mark.django_db
async def test_the_upload_forms_get_the_upload_limit(settings: Any) -> None:
    settings.POOL_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
    assert body_limit("/batches/upload/") > 20 * 1024 * 1024
    assert body_limit("/site-sessions/upload/") == body_limit("/batches/upload/")
    assert body_limit("/batches/upload/confirm/") == 2621440
    # 5 MB: too much for the login page, fine for the upload form.
    app, sent, _ = await _call("/batches/upload/", [], 80)
    assert app.bytes_read == 80 * 65536 and sent[0]["status"] == 200
    app, sent, _ = await _call("/accounts/login/", [], 80)
    assert sent[-2]["status"] == 413
