"""Notifications with real parts: an SMTP server and HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from poolsite.batches.models import Site
from poolsite.notifications import messages
from poolsite.notifications.crash_loop import CrashLoopWatch
from poolsite.notifications.daily import DailySummaryClock
from poolsite.notifications.messages import Message
from poolsite.notifications.models import (
    Event,
    Notification,
    NotificationEvent,
    NotificationTarget,
    TargetChange,
)
from poolsite.notifications.sender import Notifier, claim, deliver, send_row, send_test
from tests.conftest import user_in_role
from tests.poolsite.notify_receivers import (
    Mailbox,
    Receiver,
    free_port,
    http_receiver,
    silent_receiver,
    smtp_server,
    wait_until,
)

ALL_EVENTS = list(Event.values)


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    with smtp_server() as box:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", box.port
        settings.DEFAULT_FROM_EMAIL = "poolsite@example.org"
        yield box


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as r:
        yield r


@pytest.fixture
def silent_port() -> Iterator[int]:
    with silent_receiver() as port:
        yield port


@pytest.fixture(autouse=True)
def _short_timeouts(settings: Any) -> None:
    settings.POOL_NOTIFY_TIMEOUT = 2.0
    settings.POOL_PUBLIC_URL = "https://pool.example.org/"


def target(name: str, kind: str, address: str, events: list[str] | None = None,
           **fields: Any) -> NotificationTarget:
    return NotificationTarget.objects.create(name=name, kind=kind, address=address,
                                             events=events or ALL_EVENTS, **fields)


# -- one send ------------------------------------------------------------------------------
def test_a_dead_or_silent_target_fails_within_the_timeout_and_keeps_its_url_secret(
        silent_port: int) -> None:
    refused = f"json://127.0.0.1:{free_port()}/s3cr3t-token"
    started = time.monotonic()
    error = deliver("apprise", refused, "subject", "body")
    assert error and time.monotonic() - started < 2.5
    assert "s3cr3t-token" not in error

    silent = f"json://127.0.0.1:{silent_port}/s3cr3t-token?rto=30"
    started = time.monotonic()
    error = deliver("apprise", silent, "subject", "body", timeout=1.0)
    assert time.monotonic() - started < 1.5
    assert error == "no answer within 1 s"


@pytest.mark.django_db
def test_send_test_reaches_the_smtp_server_and_the_receiver_and_is_recorded(
        mailbox: Mailbox, receiver: Receiver) -> None:
    user = user_in_role("olga", "operators")
    by_mail = send_test(target("ops mail", "email", "ops@example.org, lead@example.org"),
                        user)
    by_hook = send_test(target("hook", "apprise", receiver.url), user)
    assert (by_mail.state, by_mail.ok, by_mail.error) == ("sent", True, "")
    assert (by_hook.state, by_hook.ok) == ("sent", True)
    assert mailbox.subjects() == ["poolsite: test notification"]
    assert mailbox.messages[0]["X-Envelope-To"] == "ops@example.org, lead@example.org"
    assert receiver.titles() == ["poolsite: test notification"]
    assert "sent by olga" in receiver.posts[0]["message"]
    assert by_hook.requested_by == user and by_hook.event == "test"
    assert by_hook.shown_address == "json://…"


# -- exactly once ----------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_an_event_is_claimed_once_whichever_hosts_report_it(receiver: Receiver) -> None:
    target("hook", "apprise", receiver.url, [Event.AUTO_PAUSED])
    target("not this event", "apprise", receiver.url, [Event.BATCH_FINISHED])
    message = Message(Event.AUTO_PAUSED, "paused", "LOGIN_REQUIRED")
    rows = claim("auto_paused:v7", message, "a:1")
    assert len(rows) == 1
    assert claim("auto_paused:v7", message, "b:2") == []
    assert send_row(rows[0], "a:1") and not send_row(rows[0], "b:2")  # sent once

    # Three hosts' notifier threads report the same event at the same moment.
    notifiers = [Notifier(f"host{i}:1") for i in range(3)]
    gate = threading.Barrier(3)

    def report(notifier: Notifier) -> None:
        gate.wait()
        notifier._notify("auto_paused:v8", lambda: message)

    threads = [threading.Thread(target=report, args=(n,)) for n in notifiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert NotificationEvent.objects.filter(key="auto_paused:v8").count() == 1
    assert Notification.objects.filter(notified__key="auto_paused:v8").count() == 1
    wait_until(lambda: len(receiver.posts) == 2, 10, "two posts")
    time.sleep(0.3)
    assert receiver.titles() == ["paused", "paused"]  # v7 and v8, once each


@pytest.mark.django_db
def test_site_targets_get_only_their_sites_events(receiver: Receiver) -> None:
    acme = Site.objects.create(name="acme", preset="demo", base_url="http://127.0.0.1:1")
    other = Site.objects.create(name="other", preset="demo", base_url="http://127.0.0.1:2")
    target("everyone", "apprise", receiver.url)
    target("acme only", "apprise", receiver.url, site=acme)
    target("other only", "apprise", receiver.url, site=other)
    target("off", "apprise", receiver.url, enabled=False)
    rows = claim("batch_finished:1:v1",
                 Message(Event.BATCH_FINISHED, "done", "", site_id=acme.pk), "h:1")
    assert sorted(r.target_name for r in rows) == ["acme only", "everyone"]


# -- the page ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_operators_add_and_test_targets_and_the_url_never_shows(
        receiver: Receiver) -> None:
    operator = user_in_role("olga", "operators")
    client = Client()
    client.force_login(operator)
    secret_url = f"{receiver.url}?token=xyzzy-secret"
    page = client.post("/notifications/add/", {
        "name": "ops hook", "kind": "apprise", "address": secret_url,
        "events": ["batch_finished", "auto_paused"], "site": "", "enabled": "on"},
        follow=True)
    assert page.status_code == 200
    added = NotificationTarget.objects.get()
    assert (added.address, added.created_by) == (secret_url, operator)
    for url in ("/notifications/", f"/notifications/{added.pk}/"):
        text = client.get(url).content.decode()
        assert "xyzzy-secret" not in text and "127.0.0.1" not in text, url
        assert "json://…" in text

    # Changing the name keeps the saved URL (the field is left empty).
    client.post(f"/notifications/{added.pk}/", {
        "name": "ops webhook", "kind": "apprise", "address": "",
        "events": ["batch_finished"], "site": "", "enabled": "on"})
    added.refresh_from_db()
    assert (added.name, added.address, added.events) == (
        "ops webhook", secret_url, ["batch_finished"])

    # A bad URL is refused without being echoed back.
    bad = client.post("/notifications/add/", {
        "name": "bad", "kind": "apprise", "address": "nosuchscheme://hush-hush",
        "events": ["batch_finished"], "site": ""}).content.decode()
    assert "hush-hush" not in bad and "not a URL Apprise knows" in bad

    tested = client.post(f"/notifications/{added.pk}/test/", follow=True).content.decode()
    assert "Test sent to" in tested
    assert receiver.titles() == ["poolsite: test notification"]
    sent = Notification.objects.get()
    assert (sent.event, sent.requested_by, sent.ok) == ("test", operator, True)
    assert "xyzzy" not in tested and "xyzzy" not in str(sent.__dict__)

    client.post(f"/notifications/{added.pk}/delete/")
    assert not NotificationTarget.objects.exists()
    assert Notification.objects.get().target_name == "ops webhook"  # the audit stays
    changes = list(TargetChange.objects.order_by("id"))
    assert [(c.action, c.username) for c in changes] == [
        ("add", "olga"), ("change", "olga"), ("delete", "olga")]
    assert changes[0].changes["address"] == [None, "json://…"]
    assert changes[1].changes == {"name": ["ops hook", "ops webhook"],
                                  "events": [["batch_finished", "auto_paused"],
                                             ["batch_finished"]]}
    assert "xyzzy" not in str([c.changes for c in changes])
    assert "ops webhook" in client.get("/notifications/").content.decode()


@pytest.mark.django_db
def test_a_failed_test_says_why_and_is_recorded() -> None:
    operator = user_in_role("olga", "operators")
    client = Client()
    client.force_login(operator)
    dead = target("dead", "apprise", f"json://127.0.0.1:{free_port()}/")
    page = client.post(f"/notifications/{dead.pk}/test/", follow=True).content.decode()
    assert "Test to &#x27;dead&#x27; failed" in page
    row = Notification.objects.get()
    assert (row.state, row.ok) == ("failed", False) and row.error


@pytest.mark.django_db
def test_viewers_see_targets_but_cannot_change_or_test_them(receiver: Receiver) -> None:
    viewer = user_in_role("victor", "viewers")
    hook = target("hook", "apprise", receiver.url)
    client = Client()
    client.force_login(viewer)
    page = client.get("/notifications/").content.decode()
    assert "hook" in page and "json://…" in page and "Send test" not in page
    assert client.get("/notifications/add/").status_code == 403
    assert client.post("/notifications/add/", {
        "name": "x", "kind": "email", "address": "x@example.org",
        "events": ["batch_finished"]}).status_code == 403
    assert client.post(f"/notifications/{hook.pk}/test/").status_code == 403
    assert client.post(f"/notifications/{hook.pk}/delete/").status_code == 403
    assert NotificationTarget.objects.count() == 1
    assert not Notification.objects.exists() and receiver.posts == []


def test_the_send_test_is_a_post_with_csrf(receiver: Receiver, db: Any) -> None:
    operator: User = user_in_role("olga", "operators")
    hook = target("hook", "apprise", receiver.url)
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get(f"/notifications/{hook.pk}/test/").status_code == 405
    assert client.post(f"/notifications/{hook.pk}/test/").status_code == 403  # no token
    assert receiver.posts == []


# -- crash loops -----------------------------------------------------------------------------
def test_a_crash_loop_is_said_once_per_run_when_restarts_pile_up() -> None:
    watch = CrashLoopWatch(restarts=3, seconds=60)
    assert watch.observe(1, 0, now=0) == ""
    assert watch.observe(1, 2, now=10) == ""  # two restarts: not yet
    assert watch.observe(1, 2, now=100) == ""  # … and they age out of the window
    assert watch.observe(1, 4, now=110) == ""
    assert watch.observe(1, 5, now=120) == "3 worker restarts within 60 s (5 in this run)"
    assert watch.observe(1, 9, now=121) == ""  # once per run
    assert watch.observe(2, 3, now=130) == "3 worker restarts within 60 s (3 in this run)"
    assert CrashLoopWatch.is_crash_loop("pool error on h:1: workers keep failing to start: x")


# -- the messages and leftovers ---------------------------------------------------------------
@pytest.mark.django_db
def test_an_outage_pause_says_what_the_probe_saw_and_that_it_resumes_by_itself(
        settings: Any) -> None:
    settings.POOL_SITE_PROBE_SECONDS = 10
    reason = ("SITE_FAILING: 5 consecutive site-level failures, last HTTP_503: "
              "Service Unavailable")
    message = messages.auto_paused(reason, None, "h:1")
    assert message.subject == "poolsite paused itself: SITE_FAILING"
    assert f"Reason: {reason}" in message.body
    assert "asks it again every 10 s and resumes by itself" in message.body
    login = messages.auto_paused("LOGIN_REQUIRED: the session expired", None, "h:1")
    assert "capture a new session" in login.body and "then press Resume" in login.body


@pytest.mark.django_db(transaction=True)
def test_sends_a_dead_host_left_pending_are_made_by_the_next_notifier(
        receiver: Receiver) -> None:
    target("hook", "apprise", receiver.url)
    rows = claim("batch_finished:3:v9", Message(Event.BATCH_FINISHED, "done", "all done"), "dead:1")
    Notification.objects.filter(pk=rows[0].pk).update(
        created_at=timezone.now() - timedelta(minutes=5))  # its host died before sending
    notifier = Notifier("next:2")
    notifier.start()
    wait_until(lambda: receiver.titles() == ["done"], 10, "the stranded send")
    notifier.close()
    assert Notification.objects.get().host == "next:2"


# -- the daily summary -----------------------------------------------------------------------
def test_the_daily_summary_comes_due_once_a_day_from_its_hour(settings: Any) -> None:
    now = timezone.now()
    settings.POOL_DAILY_SUMMARY_HOUR = None
    assert DailySummaryClock().due(now=0) is None  # off by default
    settings.POOL_DAILY_SUMMARY_HOUR = now.hour
    clock = DailySummaryClock()
    assert clock.due(now=0) == now.date()
    assert clock.due(now=1000) is None  # once a day on this host
    if now.hour < 23:
        settings.POOL_DAILY_SUMMARY_HOUR = now.hour + 1
        assert DailySummaryClock().due(now=0) is None  # not yet


@pytest.mark.django_db(transaction=True)
def test_the_daily_summary_is_sent_once_to_the_targets_that_want_it(
        receiver: Receiver) -> None:
    target("summary", "apprise", receiver.url, [Event.DAILY_SUMMARY])
    target("events only", "apprise", receiver.url, [Event.BATCH_FINISHED])
    hosts = [Notifier("a:1"), Notifier("b:2")]
    for host in hosts:
        host.start()
        host.daily_summary(timezone.now().date())
    wait_until(lambda: receiver.posts, 10, "the summary")
    for host in hosts:
        host.close(5)
    assert receiver.titles() == [f"poolsite: daily summary {timezone.now():%Y-%m-%d}"]
    assert "POs finished: 0" in receiver.posts[0]["message"]
