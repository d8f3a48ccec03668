"""The dashboard in real Chromium against a live daphne, with pretend pool updates.

The server is `manage.py dashboard_preview` in a subprocess (temp POOL_DATA_DIR):
realistic rows, and every JSON line we write to its stdin goes out through a
Broadcaster on daphne's loop, exactly like the runpool supervisor's updates.
Playwright's sync API stays in this (loop-free) test process.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from pool_core.browser import launch_args
from tests.runpool_harness import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "preview-password-42"
HOST = "preview-host:4242"
UPDATE_TIMEOUT = 5_000  # ms for the DOM to show an update

pytestmark = pytest.mark.timeout(240)


class PreviewServer:
    """`manage.py dashboard_preview` on a port, restartable, fed through stdin."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",
                                                                     "REDIS_URL")}
        self.env.update(POOL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
        self.sessions: dict[str, str] = {}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

    def migrate(self) -> None:
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                              cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr

    def start(self, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "dashboard_preview", "--port", str(self.port),
             "--stdin", *extra], cwd=ROOT, env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"preview server not ready: {self.output[-20:]}") from None
            if line.startswith("session "):
                _, name, key = line.split()
                self.sessions[name] = key
            if line.startswith("ready "):
                return

    def _read(self, proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.rstrip())
            lines.put(line.strip())

    def send(self, **message: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreviewServer]:
    preview = PreviewServer(tmp_path_factory.mktemp("dashboard-data"))
    preview.migrate()
    preview.start("--seed", "--pos", "240", "--workers", "4",
                  "--user", f"operators:otto:{PASSWORD}", "--user", f"viewers:vera:{PASSWORD}")
    yield preview
    preview.stop()


@pytest.fixture(scope="module")
def browser(browser_path: str) -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=browser_path, args=launch_args())
        yield chromium
        chromium.close()
    leftovers = [p.name() for p in psutil.Process().children(recursive=True)
                 if "chrom" in p.name() or "headless" in p.name()]
    assert leftovers == [], f"browser processes left behind: {leftovers}"


def sign_in(browser: Browser, server: PreviewServer, name: str) -> tuple[BrowserContext, Page]:
    """Sign in through the login form, or with the preview's session when there is none."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server.url}/")
    if page.locator("input[name=username]").count():
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", PASSWORD)
        page.locator("input[name=password]").press("Enter")
        page.wait_for_url(f"{server.url}/")
    else:  # no registration/login.html yet: use the session the server created
        context.add_cookies([{"name": "sessionid", "value": server.sessions[name],
                              "url": server.url}])
        page.goto(f"{server.url}/")
    expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live")
    page.evaluate("window.__sameDocument = true")
    return context, page


def card(page: Page, worker: str, field: str) -> Any:
    return page.locator(f'article[data-key="{HOST}/{worker}"] [data-f="{field}"]')


def test_it_shows_pool_updates_live_without_reload(browser: Browser,
                                                   server: PreviewServer) -> None:
    context, page = sign_in(browser, server, "otto")
    try:
        expect(page.locator("#pool-state")).to_have_text("running")
        expect(page.locator("#workers article.card")).to_have_count(4)
        expect(page.locator("#failures article.failure img").first).to_be_visible()

        server.send(workers={f"{HOST}/w2": {"state": "busy", "po_number": "PO777001",
                                            "phase": "download", "memory_mb": 352,
                                            "po_started_at": time.time() - 65}},
                    pool={"host": HOST, "state": "RUNNING", "sent_at": int(time.time() * 1000)})
        expect(card(page, "w2", "po_number")).to_have_text("PO777001", timeout=UPDATE_TIMEOUT)
        expect(card(page, "w2", "phase")).to_have_text("download")
        expect(card(page, "w2", "elapsed")).to_contain_text("1:0")

        server.send(workers={f"{HOST}/w5": {"state": "starting", "memory_limit_mb": 400}},
                    events=[{"at": time.time(), "host": HOST, "level": "warning",
                             "kind": "worker_replaced", "message": "w5 replaces crashed w1"}])
        expect(page.locator("#workers article.card")).to_have_count(5, timeout=UPDATE_TIMEOUT)
        expect(page.locator("#events li").first).to_contain_text("w5 replaces crashed w1")

        counts = {"QUEUED": 120, "RUNNING": 4, "COMPLETED": 104, "PARTIAL": 4, "TIMEOUT": 5,
                  "LOGIN_REQUIRED": 3}
        reason = "LOGIN_REQUIRED on coupa: the site asked for a login"
        expect(page.locator("#site-sessions .login-required")).to_be_hidden()
        server.send(pool={"host": HOST, "state": "PAUSED", "reason": reason,
                          "counts": counts, "total": 240, "sent_at": int(time.time() * 1000)})
        expect(page.locator("#pool-state")).to_have_text("paused", timeout=UPDATE_TIMEOUT)
        expect(page.locator("#pool-reason")).to_have_text(reason)
        expect(page.locator("#site-sessions .login-required")).to_be_visible()
        expect(page.locator('[data-counter="completed"]')).to_have_text("108")
        expect(page.locator('[data-counter="failed"]')).to_have_text("8")
        expect(page.locator("#progress-done")).to_have_text("116")

        assert page.evaluate("window.__sameDocument") is True  # never reloaded
        latencies = page.evaluate("window.poolDashboard.latencies")
        assert latencies and all(0 <= ms < 5_000 for ms in latencies[1:])
        assert page.locator("#dashboard").get_attribute("data-last-latency-ms")

        server.send(pool={"host": HOST, "state": "RUNNING", "reason": ""},
                    workers={f"{HOST}/w5": {"removed": True}})
        expect(page.locator("#pool-state")).to_have_text("running", timeout=UPDATE_TIMEOUT)
        expect(page.locator("#site-sessions .login-required")).to_be_hidden()
        expect(page.locator("#workers article.card")).to_have_count(4)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    finally:
        context.close()


def test_it_steers_the_pool_with_buttons_and_keeps_dashboards_in_sync(
        browser: Browser, server: PreviewServer) -> None:
    context, page = sign_in(browser, server, "otto")
    other_context, other = sign_in(browser, server, "vera")
    try:
        expect(page.locator("#plan-state")).to_have_text("running")
        expect(page.locator('button[data-action="resume"]')).to_be_disabled()
        expect(page.locator('button[data-action="start"]')).to_be_disabled()

        page.click('button[data-action="pause"]')
        expect(page.locator("#control-result")).to_contain_text("Pausing")
        for each in (page, other):
            expect(each.locator("#plan-state")).to_have_text("paused", timeout=UPDATE_TIMEOUT)
        expect(page.locator('button[data-action="pause"]')).to_be_disabled()
        expect(page.locator('button[data-action="resume"]')).to_be_enabled()

        page.click('button[data-action="resume"]')
        expect(page.locator("#plan-state")).to_have_text("running", timeout=UPDATE_TIMEOUT)

        page.fill("#scale-size", "6")
        page.click('button[data-action="scale"]')
        for each in (page, other):
            expect(each.locator("#plan-size")).to_have_text("6", timeout=UPDATE_TIMEOUT)

        dialogs: list[str] = []
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))
        page.click('#pool-form button[data-action="stop"]')
        expect(page.locator("#plan-state")).to_have_text("stopping", timeout=UPDATE_TIMEOUT)
        assert dialogs and "Stop the pool?" in dialogs[0]
        expect(page.locator("#control-result")).to_contain_text("Stopping")
        assert page.evaluate("window.__sameDocument") is True
    finally:
        other_context.close()
        context.close()


def test_a_viewer_sees_live_updates_but_no_controls(browser: Browser,
                                                   server: PreviewServer) -> None:
    context, page = sign_in(browser, server, "vera")
    try:
        assert page.locator("#controls").count() == 0
        assert page.locator("button[data-action]").count() == 0
        server.send(workers={f"{HOST}/w3": {"phase": "verify files", "po_number": "PO777333"}},
                    pool={"host": HOST, "sent_at": int(time.time() * 1000)})
        expect(card(page, "w3", "po_number")).to_have_text("PO777333", timeout=UPDATE_TIMEOUT)
        # Going around the page: the server refuses the control message itself.
        answer = page.evaluate("""() => new Promise((resolve, reject) => {
            const ws = new WebSocket(`ws://${location.host}/ws/pool/`);
            setTimeout(() => reject(new Error("no answer")), 5000);
            ws.onopen = () => ws.send(JSON.stringify({action: "pause"}));
            ws.onmessage = (event) => {
                const message = JSON.parse(event.data);
                if (message.kind === "control_result") { ws.close(); resolve(message); }
            };
        })""")
        assert answer["ok"] is False and "permission" in answer["message"]
    finally:
        context.close()


def test_it_works_without_javascript(browser: Browser, server: PreviewServer) -> None:
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies([{"name": "sessionid", "value": server.sessions["otto"],
                          "url": server.url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{server.url}/")
        expect(page.locator("#conn")).to_contain_text("reload for news")
        expect(page.locator("#workers article.card")).to_have_count(4)
        size = page.locator("#plan-size").inner_text()
        page.fill("#scale-size", "3" if size != "3" else "5")
        page.click('button[data-action="scale"]')  # a plain form POST, then a redirect
        expect(page.locator(".flash")).to_contain_text("Scaling to")
        expect(page.locator("#plan-size")).not_to_have_text(size)
    finally:
        context.close()


def test_it_reconnects_after_a_server_restart(browser: Browser, server: PreviewServer) -> None:
    context, page = sign_in(browser, server, "otto")
    try:
        snapshots = int(page.locator("#dashboard").get_attribute("data-snapshots") or 0)
        server.stop()
        expect(page.locator("#conn")).to_contain_text("reconnecting", timeout=10_000)
        server.start()
        expect(page.locator("#dashboard")).to_have_attribute("data-connection", "live",
                                                             timeout=30_000)
        assert int(page.locator("#dashboard").get_attribute("data-snapshots") or 0) > snapshots
        server.send(workers={f"{HOST}/w1": {"po_number": "PO777999"}})
        expect(card(page, "w1", "po_number")).to_have_text("PO777999", timeout=UPDATE_TIMEOUT)
        assert page.evaluate("window.__sameDocument") is True
    finally:
        context.close()

