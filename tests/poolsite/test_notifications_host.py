"""A host tells operators of a finished batch and of an auto-pause: once each, with the
right counts, through a real SMTP server and a real HTTP receiver; a dead target slows
nothing. Real workers on the demo site (in-process hosts, see tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from poolsite.batches.batch_import import batch_import_rows
from poolsite.batches.models import Batch, Run, Status
from poolsite.demo_erp import catalog
from poolsite.demo_erp.server import DemoSite
from poolsite.notifications.models import Event, Notification, NotificationTarget
from poolsite.supervisor.broadcast import Broadcaster
from poolsite.supervisor.controls import request_control
from poolsite.supervisor.host import HostOptions, HostSupervisor
from poolsite.supervisor.models import PoolPlan
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

pytestmark = pytest.mark.django_db(transaction=True)
SILENT_TIMEOUT = 5.0  # POOL_NOTIFY_TIMEOUT here: what a silent receiver costs a send


@pytest.fixture
def operator() -> User:
    return user_in_role("olga", "operators")


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    with smtp_server() as box:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", box.port
        settings.POOL_NOTIFY_TIMEOUT = SILENT_TIMEOUT
        settings.POOL_PUBLIC_URL = "https://pool.example.org"
        yield box


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with http_receiver() as r:
        yield r


@pytest.fixture
def dead_targets() -> Iterator[list[NotificationTarget]]:
    """A port nothing listens on and a receiver that never answers, wanting everything.

    The silent one lets Apprise wait a minute for an answer: poolsite's own timeout ends
    the send."""
    with silent_receiver() as silent_port:
        yield [NotificationTarget.objects.create(name=name, kind="apprise", address=url,
                                                 events=list(Event.values))
               for name, url in (("refused", f"json://127.0.0.1:{free_port()}/"),
                                 ("silent", f"json://127.0.0.1:{silent_port}/?rto=60"))]


def _targets(mailbox: Mailbox, receiver: Receiver) -> None:
    NotificationTarget.objects.create(name="ops mail", kind="email",
                                      address="ops@example.org",
                                      events=[Event.BATCH_FINISHED, Event.AUTO_PAUSED])
    NotificationTarget.objects.create(name="ops hook", kind="apprise", address=receiver.url,
                                      events=list(Event.values))


def _settled(event: str, count: int) -> bool:
    rows = Notification.objects.filter(event=event)
    return rows.count() == count and not rows.filter(state__in=("pending", "sending")).exists()


def _run_to_the_end(operator: User, batch: Batch) -> float:
    started = time.monotonic()
    request_control(operator, "start", batch=batch)
    wait_until(lambda: PoolPlan.current().state == PoolPlan.State.IDLE, 120, "batch done")
    return time.monotonic() - started


@pytest.mark.slow
def test_a_finished_batch_is_told_once_with_its_counts_and_dead_targets_slow_nothing(
        site: DemoSite, start_host: Callable[..., HostSupervisor], operator: User,
        mailbox: Mailbox, receiver: Receiver,
        dead_targets: list[NotificationTarget]) -> None:
    _targets(mailbox, receiver)
    host = start_host()
    pos = catalog.demo_batch(site.base_url, 4)
    pos[2] = catalog.po_dict(site.base_url, catalog.NOT_FOUND)  # the site does not know it
    first = batch_import_rows(pos, name="first")
    took_first = _run_to_the_end(operator, first)

    # The notifier is now busy with the silent receiver for SILENT_TIMEOUT seconds; a
    # second batch runs meanwhile and takes no longer than the first.
    second = batch_import_rows(catalog.demo_batch(site.base_url, 4), name="second")
    wait_until(lambda: host.pool is None, 30, "the workers stopped")
    assert not _settled(Event.BATCH_FINISHED, 4)  # the silent send is still waiting
    took_second = _run_to_the_end(operator, second)
    print(f"first batch {took_first:.1f} s, second (dead targets pending) {took_second:.1f} s")
    # Had the host waited for the silent send, the second batch could only have started
    # once it gave up (SILENT_TIMEOUT after the first finished): it started and claimed
    # its POs while the send was still waiting. (The durations are printed, not compared:
    # on a shared machine they vary by more than the timeout.)
    wait_until(lambda: _settled(Event.BATCH_FINISHED, 8), 30, "every send settled")
    silent_sent = Notification.objects.get(target__name="silent", notified__batch=first)
    assert silent_sent.sent_at is not None
    assert second.runs.get().started_at < silent_sent.sent_at
    assert second.pos.filter(first_attempt_at__lt=silent_sent.sent_at).exists()
    time.sleep(1.0)  # the host steps on: nothing is sent twice
    assert mailbox.subjects() == [
        "poolsite: batch first finished: 3 of 4 PO(s) succeeded",
        "poolsite: batch second finished: 4 of 4 PO(s) succeeded"]
    body = mailbox.messages[0].get_content().replace("\r\n", "\n")
    assert "POs: 4\n  Completed: 3\n  PO not found: 1\n" in body
    assert "Duration: " in body
    assert f"Results: https://pool.example.org/batches/{first.pk}/" in body
    assert receiver.titles() == mailbox.subjects()
    assert "Completed: 4" in receiver.posts[1]["message"]
    assert set(first.pos.values_list("status", flat=True)) == {Status.COMPLETED,
                                                               Status.PO_NOT_FOUND}

    failed = Notification.objects.filter(target__in=dead_targets)
    assert failed.count() == 4 and set(failed.values_list("state", flat=True)) == {"failed"}
    silent = failed.filter(target__name="silent").first()
    assert silent is not None and silent.error == f"no answer within {SILENT_TIMEOUT:g} s"
    assert all(row.error for row in failed)


@pytest.mark.slow
def test_an_auto_pause_for_a_sign_in_is_told_once_with_what_to_do(
        site: DemoSite, start_host: Callable[..., HostSupervisor], operator: User,
        mailbox: Mailbox, receiver: Receiver, settings: Any, tmp_path: Path) -> None:
    _targets(mailbox, receiver)
    settings.DATA_DIR = tmp_path / "data"  # no saved session: the site asks to sign in
    start_host(signed_in=False)
    batch = batch_import_rows(catalog.demo_batch(site.base_url, 4), name="no session")
    request_control(operator, "start", batch=batch)
    wait_until(lambda: PoolPlan.current().state == PoolPlan.State.PAUSED, 60, "auto-pause")
    assert PoolPlan.current().reason.startswith("LOGIN_REQUIRED")

    wait_until(lambda: _settled(Event.AUTO_PAUSED, 2), 30, "both sends settled")
    time.sleep(1.0)  # the paused hosts step on: nothing is sent twice
    assert len(mailbox.messages) == 1 and len(receiver.posts) == 1
    subject = mailbox.subjects()[0]
    assert subject == "poolsite paused itself on batch no session: LOGIN_REQUIRED"
    body = mailbox.messages[0].get_content().replace("\r\n", "\n")
    assert "capture a new session on the Site sessions page " \
           "(https://pool.example.org/site-sessions/), then press Resume" in body
    assert f"Batch no session (#{batch.pk}) so far:\n  Running: " in body
    assert receiver.titles() == [subject]
    assert Notification.objects.filter(event=Event.AUTO_PAUSED, ok=True).count() == 2


class RestartingPool:
    """Stands in for a WorkerPool whose two workers keep being restarted."""

    def __init__(self) -> None:
        self.restarts = 0

    def get_status(self) -> dict[str, Any]:
        return {"worker_details": [{"id": 0, "restarts": self.restarts},
                                   {"id": 1, "restarts": self.restarts}]}


def test_a_crash_loop_is_told_once_per_run(site: DemoSite, receiver: Receiver,
                                           settings: Any, tmp_path: Path) -> None:
    settings.POOL_CRASH_LOOP_RESTARTS, settings.POOL_CRASH_LOOP_SECONDS = 4, 60
    NotificationTarget.objects.create(name="hook", kind="apprise", address=receiver.url,
                                      events=[Event.CRASH_LOOP])
    batch = batch_import_rows(catalog.demo_batch(site.base_url, 1), name="crashing")
    host = HostSupervisor(HostOptions(output_root=tmp_path), Broadcaster())
    host.notifier.start()
    pool = RestartingPool()
    host.runner.pool = pool  # type: ignore[assignment]
    host.runner.run = Run.objects.create(batch=batch, host=host.name, pool_size=2)
    try:
        for restarts in range(6):  # 0, 2, 4, … restarts in all
            pool.restarts = restarts
            host.crash_watch._next_check = 0.0
            host._watch_crashes()
        wait_until(lambda: receiver.posts, 10, "the crash-loop message")
        time.sleep(0.3)
        assert receiver.titles() == ["poolsite: workers crash again and again on batch "
                                     "crashing"]
        assert "4 worker restarts within 60 s" in receiver.posts[0]["message"]
    finally:
        host.runner.pool = None
        host.notifier.close()
        host.recorder.close()
        host.source.close()
        host.broadcaster.close()
