"""Sending notifications, never in the pool's way.

    host loop ── notify_*() ─▶ queue ─▶ the "notifier" thread:
                                          1. claim the event: insert its unique key, and
                                             one pending Notification per target, in one
                                             transaction (a second host's insert fails:
                                             the event is notified once, by one host)
                                          2. send each pending row (conditional update
                                             pending → sending first), each send in a
                                             thread of its own given POOL_NOTIFY_TIMEOUT
                                          3. record sent/failed, the error, the seconds

The host loop only puts a tuple on a queue. A dead target (refused, or a receiver that
never answers) costs the notifier thread the timeout and nothing else. Rows a host
claimed but never began to send (it died) are sent by any notifier, when it starts and
after each quiet minute; a send cut off halfway by a dying host is not made again (at
most once per target).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, close_old_connections, reset_queries, transaction
from django.db.models import Q
from django.utils import timezone

from poolsite.notifications import messages
from poolsite.notifications.messages import Message
from poolsite.notifications.models import (
    Notification,
    NotificationEvent,
    NotificationTarget,
)

log = logging.getLogger(__name__)
STRANDED_AFTER = timedelta(minutes=1)  # a pending row this old lost its host


# -- one send ---------------------------------------------------------------------------
def scrub(text: str, secret: str) -> str:
    """`text` without the secret URL or any of its parts (tokens, passwords, hosts)."""
    parts = urlsplit(secret)
    pieces = {secret, parts.netloc, parts.path, parts.password or "", parts.username or ""}
    pieces |= {p for p in parts.path.split("/") if len(p) >= 4}
    pieces |= {value for _, value in parse_qsl(parts.query) if len(value) >= 4}
    for piece in sorted((p for p in pieces if p), key=len, reverse=True):
        text = text.replace(piece, "…")
    return text


def _send_email(address: str, subject: str, body: str, timeout: float) -> str:
    recipients = [a.strip() for a in address.split(",") if a.strip()]
    connection = get_connection(timeout=timeout)
    sent = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, recipients,
                        connection=connection).send()
    return "" if sent else "the e-mail backend sent nothing"


def _send_apprise(url: str, subject: str, body: str, timeout: float) -> str:
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        return "not a valid Apprise URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = sender.notify(body=body, title=subject)
    if ok:
        return ""
    problems = " ".join(captured.getvalue().split())
    return scrub(problems or "the service did not take it", url)


def deliver(kind: str, address: str, subject: str, body: str,
            timeout: float | None = None) -> str:
    """Send one message to one target within `timeout` seconds; "" or why it failed.

    The send runs in a thread of its own: whatever the target does (refuse, hang, answer
    slowly), this returns after `timeout` at the latest.
    """
    timeout = float(settings.POOL_NOTIFY_TIMEOUT if timeout is None else timeout)
    send: Callable[[str, str, str, float], str] = (
        _send_email if kind == NotificationTarget.Kind.EMAIL else _send_apprise)
    outcome: list[str] = []

    def attempt() -> None:
        try:
            outcome.append(send(address, subject, body, timeout))
        except Exception as exc:  # any failure of any target is only recorded
            text = f"{type(exc).__name__}: {exc}"
            outcome.append(scrub(text, address) if kind != "email" else text)

    thread = threading.Thread(target=attempt, name="notify-send", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0][:500]


def send_row(row: Notification, host: str) -> bool:
    """Send one pending Notification row unless another sender took it; True if sent."""
    if not Notification.objects.filter(pk=row.pk, state=Notification.State.PENDING).update(
            state=Notification.State.SENDING, host=host):
        return False
    target = row.target
    started = time.monotonic()
    if target is None:
        error = "the target was deleted"
    elif not target.enabled:
        error = "the target was disabled"
    else:
        error = deliver(target.kind, target.address, row.subject, row.body)
    seconds = round(time.monotonic() - started, 3)
    state = Notification.State.FAILED if error else Notification.State.SENT
    Notification.objects.filter(pk=row.pk).update(
        state=state, ok=not error, error=error, sent_at=timezone.now(), seconds=seconds)
    if error:
        log.warning("notification %s to %s failed: %s", row.event, row.target_name, error)
    else:
        log.info("notification %s sent to %s", row.event, row.target_name)
    return not error


def send_test(target: NotificationTarget, user: Any) -> Notification:
    """The "send test" button: send now (within the timeout) and record it."""
    message = messages.test_message(target.name, getattr(user, "username", "") or "?")
    row = Notification.objects.create(
        target=target, target_name=target.name, shown_address=target.shown_address,
        event=Notification.TEST, subject=message.subject, body=message.body,
        requested_by=user if getattr(user, "is_authenticated", False) else None)
    send_row(row, host="web")
    row.refresh_from_db()
    return row


# -- events -----------------------------------------------------------------------------
def claim(key: str, message: Message, host: str) -> list[Notification]:
    """Claim the event `key` and queue one row per target that wants it; [] if claimed.

    The unique key makes the claim hold across hosts: the second insert of a key fails
    and that host sends nothing.
    """
    targets = [t for t in NotificationTarget.objects.filter(enabled=True).filter(
        Q(site=None) | Q(site=message.site_id)) if t.wants(message.event, message.site_id)]
    try:
        with transaction.atomic():
            notified = NotificationEvent.objects.create(
                key=key, event=message.event, batch_id=message.batch_id, host=host)
            return [Notification.objects.create(
                notified=notified, target=target, target_name=target.name,
                shown_address=target.shown_address, event=message.event,
                subject=message.subject[:300], body=message.body) for target in targets]
    except IntegrityError:
        log.info("notification %s already claimed by another host", key)
        return []


class Notifier:
    """The notifier thread of a host (see the module docstring)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._queue: queue.Queue[tuple[str, str, Callable[[], Message]] | None] = (
            queue.Queue())
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop after what is queued, waiting at most `timeout` (POOL_NOTIFY_TIMEOUT).

        A host that exits right after a batch finished (`--exit-when-idle`) gets its
        message out unless a target hangs; what is still pending then is sent by
        another host's notifier (STRANDED_AFTER).
        """
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(settings.POOL_NOTIFY_TIMEOUT if timeout is None else timeout)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    # -- what the host reports (cheap: a queue put) -------------------------------------
    def batch_finished(self, batch_id: int, plan_version: int) -> None:
        self._put(f"batch_finished:{batch_id}:v{plan_version}",
                  lambda: messages.batch_finished(batch_id))

    def auto_paused(self, reason: str, batch_id: int | None, plan_version: int) -> None:
        self._put(f"auto_paused:v{plan_version}",
                  lambda: messages.auto_paused(reason, batch_id, self.host))

    def crash_loop(self, reason: str, batch_id: int | None, run_id: int | None) -> None:
        self._put(f"crash_loop:{self.host}:run{run_id}",
                  lambda: messages.crash_loop(reason, batch_id, self.host))

    def daily_summary(self, day: date) -> None:
        self._put(f"daily_summary:{day:%Y-%m-%d}", lambda: messages.daily_summary(day))

    def _put(self, key: str, compose: Callable[[], Message]) -> None:
        self._queue.put(("event", key, compose))

    # -- the thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        self._guarded(self._send_stranded)
        while True:
            try:
                item = self._queue.get(timeout=STRANDED_AFTER.total_seconds())
            except queue.Empty:  # a quiet minute: look for sends a dead host left
                self._guarded(self._send_stranded)
                continue
            try:
                if item is None:
                    return
                _, key, compose = item
                self._guarded(functools.partial(self._notify, key, compose))
            finally:
                self._queue.task_done()

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # notifications never take a host down
            log.exception("notifying failed; going on")
            close_old_connections()
        finally:
            reset_queries()

    def _notify(self, key: str, compose: Callable[[], Message]) -> None:
        if NotificationEvent.objects.filter(key=key).exists():
            return  # another host got there first: spare composing it
        for row in claim(key, compose(), self.host):
            send_row(row, self.host)

    def _send_stranded(self) -> None:
        before = timezone.now() - STRANDED_AFTER
        for row in Notification.objects.filter(state=Notification.State.PENDING,
                                               created_at__lt=before).select_related("target"):
            send_row(row, self.host)
