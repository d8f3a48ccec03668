"""Control messages from the page (WebSocket or no-JS form) turned into button presses.

Both entry points parse the same fields and end in `request_control`, which checks the
permission again, records the press (refusals included) and changes the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from poolsite.batches.models import Batch, ControlAction, PurchaseOrder
from poolsite.supervisor.controls import ControlRefused, request_control

Action = ControlAction.Action
Outcome = ControlAction.Outcome
# Pool actions that end work in progress: the page asks before sending them.
DESTRUCTIVE = (Action.STOP,)


class BadControl(ValueError):
    """A control message that is malformed (not a refusal: nothing is recorded)."""


@dataclass(frozen=True)
class ControlRequest:
    action: str
    batch: int | None = None
    po: int | None = None
    size: int | None = None
    immediate: bool = False


def parse_control(data: Any) -> ControlRequest:
    """Validate the shape of {"action", "batch", "po", "size", "immediate"}."""
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        raise BadControl("a control message needs an action")
    return ControlRequest(
        action=data["action"][:30], batch=_whole(data, "batch"), po=_whole(data, "po"),
        size=_whole(data, "size"), immediate=_flag(data.get("immediate")))


def _whole(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise BadControl(f"{name} must be a whole number")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int):
        return value
    raise BadControl(f"{name} must be a whole number")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


def perform_control(user_pk: int | None, request: ControlRequest) -> tuple[bool, str]:
    """Press the button as the user (re-read, so revoked roles count); say what came of it."""
    user = (None if user_pk is None else
            get_user_model().objects.filter(pk=user_pk, is_active=True).first())
    if user is None:
        return False, "your account is not active"
    batch = po = None
    if request.batch is not None:
        batch = Batch.objects.filter(pk=request.batch).first()
        if batch is None:
            return False, f"there is no batch #{request.batch}"
    if request.po is not None:
        po = PurchaseOrder.objects.filter(pk=request.po).first()
        if po is None:
            return False, f"there is no PO #{request.po}"
    try:
        record = request_control(user, request.action, batch=batch, po=po, size=request.size,
                                 immediate=request.immediate)
    except ControlRefused as refusal:
        return False, str(refusal)
    return True, describe(record)


def record_rate_limited(user_pk: int | None, action: str, window: float) -> None:
    """One audit row for a burst of refused control messages from one connection."""
    user = None if user_pk is None else get_user_model().objects.filter(pk=user_pk).first()
    ControlAction.record(user, action[:30], outcome=Outcome.REFUSED, outcome_message=(
        "rate-limited: more control messages from a user who may not control the pool; "
        f"further ones from this connection are refused without a record for {window:.0f} s"))


def describe(record: ControlAction) -> str:
    """One sentence for the page about an accepted press."""
    if record.outcome != Outcome.PENDING:
        return record.outcome_message or f"{record.action}: {record.outcome}"
    what = {
        Action.START: f"Started {record.batch}" if record.batch else "Started",
        Action.PAUSE: "Pausing: workers finish their current PO, then wait",
        Action.RESUME: "Resuming",
        Action.STOP: ("Stopping now: work in progress is abandoned and retried later"
                      if record.arguments.get("immediate") else
                      "Stopping: workers finish their current PO first"),
        Action.SCALE: f"Scaling to {record.arguments.get('size')} worker(s)",
    }.get(ControlAction.Action(record.action), str(record.action))
    return f"{what} (plan v{record.arguments.get('plan_version', '?')})."
