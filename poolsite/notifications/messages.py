"""The text of each notification: subject and body, built from the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.urls import reverse
from django.utils import timezone

from pool_core.reasons import Pause, PauseReason
from poolsite.batches.models import (
    PENDING_STATUSES,
    SUCCESS_STATUSES,
    Batch,
    PurchaseOrder,
    Run,
    Status,
)
from poolsite.notifications.models import Event, NotificationEvent


@dataclass(frozen=True)
class Message:
    event: str
    subject: str
    body: str
    batch_id: int | None = None
    site_id: int | None = None


def public_url(path: str = "/") -> str:
    """An absolute link into poolsite for a message (POOL_PUBLIC_URL + path)."""
    return settings.POOL_PUBLIC_URL.rstrip("/") + path


def duration_text(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _counts_lines(batch: Batch) -> tuple[dict[str, int], list[str]]:
    counts = {status: n for status, n in batch.status_counts().items() if n}
    lines = [f"  {Status(status).label}: {n}" for status, n in counts.items()]
    return counts, lines


def batch_finished(batch_id: int) -> Message:
    batch = Batch.objects.select_related("site").get(pk=batch_id)
    counts, lines = _counts_lines(batch)
    total = sum(counts.values())
    started = Run.objects.filter(batch=batch).aggregate(first=Min("started_at"))["first"]
    finished = timezone.now()
    took = duration_text((finished - started).total_seconds()) if started else "unknown"
    succeeded = sum(counts.get(status, 0) for status in SUCCESS_STATUSES)
    subject = f"poolsite: batch {batch.name} finished: {succeeded} of {total} PO(s) succeeded"
    body = "\n".join([
        f"Batch {batch.name} (#{batch.pk}) finished: every PO has a final status.",
        "",
        f"POs: {total}",
        *lines,
        "",
        f"Started: {started:%Y-%m-%d %H:%M UTC}" if started else "Started: unknown",
        f"Finished: {finished:%Y-%m-%d %H:%M UTC}",
        f"Duration: {took}",
        f"Site: {batch.site.name if batch.site else batch.site_preset}",
        "",
        f"Results: {public_url(batch.get_absolute_url())}",
    ])
    return Message(Event.BATCH_FINISHED, subject, body, batch.pk, batch.site_id)


def what_to_do(reason: str) -> str:
    pause = Pause.from_text(reason)
    if pause is not None and pause.reason is PauseReason.LOGIN_REQUIRED:
        return ("What to do: capture a new session on the Site sessions page "
                f"({public_url(reverse('site_sessions'))}), then press Resume on the "
                f"dashboard ({public_url('/')}).")
    if pause is not None and pause.reason is PauseReason.SITE_FAILING:
        return (f"The site is failing. poolsite asks it again every "
                f"{settings.POOL_SITE_PROBE_SECONDS:g} s and resumes by itself once it "
                "answers; the POs the outage failed are queued again. Nothing to do unless "
                f"it stays down (dashboard: {public_url('/')}).")
    return (f"What to do: look at the dashboard ({public_url('/')}), fix the cause, then "
            "press Resume.")


def auto_paused(reason: str, batch_id: int | None, host: str) -> Message:
    batch = (Batch.objects.filter(pk=batch_id).select_related("site").first()
             if batch_id is not None else None)
    lines: list[str] = []
    pause = Pause.from_text(reason)
    kind = str(pause.reason) if pause is not None else ""
    where = f" on batch {batch.name}" if batch else ""
    subject = f"poolsite paused itself{where}: {kind or reason[:80]}"
    if batch is not None:
        _, lines = _counts_lines(batch)
        lines = ["", f"Batch {batch.name} (#{batch.pk}) so far:", *lines,
                 f"Batch page: {public_url(batch.get_absolute_url())}"]
    body = "\n".join([
        f"The pool paused itself ({host}).",
        f"Reason: {reason}",
        "",
        what_to_do(reason),
        *lines,
    ])
    return Message(Event.AUTO_PAUSED, subject, body, batch_id,
                   batch.site_id if batch else None)


def crash_loop(reason: str, batch_id: int | None, host: str) -> Message:
    batch = Batch.objects.filter(pk=batch_id).first() if batch_id is not None else None
    where = f" on batch {batch.name}" if batch else ""
    body = "\n".join([
        f"Workers of {host} keep crashing{where}.",
        f"What was seen: {reason}",
        "",
        "Each crashed worker is replaced and its PO tried again, but a worker that keeps "
        "crashing usually means too little memory, a broken browser or a site page that "
        f"kills it. Look at the dashboard ({public_url('/')}) and the host's log.",
    ])
    return Message(Event.CRASH_LOOP, f"poolsite: workers crash again and again{where}",
                   body, batch_id, batch.site_id if batch else None)


def daily_summary(day: date) -> Message:
    """The last 24 hours: POs finished by status, batches finished, pauses, crashes and
    notifications that could not be sent."""
    from poolsite.notifications.models import Notification
    from poolsite.supervisor.models import PoolEvent

    until = timezone.now()
    since = until - timedelta(days=1)
    finished = (PurchaseOrder.objects.filter(last_attempt_at__gte=since)
                .exclude(status__in=PENDING_STATUSES).order_by()
                .values_list("status").annotate(n=Count("id")))
    lines = [f"  {Status(status).label}: {n}" for status, n in finished]
    batches = NotificationEvent.objects.filter(event=Event.BATCH_FINISHED,
                                               created_at__gte=since).count()
    pauses = PoolEvent.objects.filter(kind="auto_paused", at__gte=since).count()
    crashes = PoolEvent.objects.filter(kind="worker_crashed", at__gte=since).count()
    failed_sends = Notification.objects.filter(state=Notification.State.FAILED,
                                               created_at__gte=since).count()
    body = "\n".join([
        f"poolsite, the last 24 hours (to {until:%Y-%m-%d %H:%M UTC}):",
        "",
        f"POs finished: {sum(n for _, n in finished)}",
        *lines,
        f"Batches finished: {batches}",
        f"Pauses by the pool itself: {pauses}",
        f"Worker crashes: {crashes}",
        f"Notifications that could not be sent: {failed_sends}",
        "",
        f"Dashboard: {public_url('/')}",
    ])
    return Message(Event.DAILY_SUMMARY, f"poolsite: daily summary {day:%Y-%m-%d}", body)


def test_message(target_name: str, user: str) -> Message:
    return Message("test", "poolsite: test notification",
                   f"A test of the notification target {target_name!r}, sent by {user} "
                   f"from {public_url('/')}.\nIf you read this, it works.")

