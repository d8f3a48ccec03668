"""Button presses: validate, record as a ControlAction, change the plan, wake the hosts.

One entry point, `request_control`, serves the dashboard's WebSocket, the HTTP views
and the admin, so a rule (who may press what, in which state) lives in one place.
Actions that only touch the database (retry failed, cancel a queued PO) are settled
here; the rest change the PoolPlan and are settled by the first host that applies
them (`settle_applied`).
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from poolsite.batches.models import Batch, ControlAction, POQuerySet, PurchaseOrder, Status
from poolsite.batches.roles import can_operate
from poolsite.sessions.health import start_refusal
from poolsite.supervisor.models import PoolPlan

log = logging.getLogger(__name__)
Action = ControlAction.Action
Outcome = ControlAction.Outcome
WAKE_GROUP = "pool.control"
MIN_SIZE, MAX_SIZE = 1, 8
MAX_LISTED = 1000  # PO numbers a retry of chosen POs lists in its record

# Which plan states each pool action may be pressed in (the dashboard enables the
# buttons from the same table).
ALLOWED_IN = {
    Action.START: (PoolPlan.State.IDLE,),
    Action.PAUSE: (PoolPlan.State.RUNNING,),
    Action.RESUME: (PoolPlan.State.PAUSED,),
    Action.STOP: (PoolPlan.State.RUNNING, PoolPlan.State.PAUSED, PoolPlan.State.STOPPING),
    Action.SCALE: tuple(PoolPlan.State),
}


# Recorded elsewhere (batch upload, site sessions), never pressed through here.
NOT_POOL_ACTIONS = (Action.UPLOAD, Action.CAPTURE_SESSION, Action.UPLOAD_SESSION,
                    Action.DELETE_SESSION, Action.ADD_SITE, Action.CHANGE_SITE,
                    Action.DELETE_SITE, Action.CREATE_API_TOKEN, Action.REVOKE_API_TOKEN)


class ControlRefused(Exception):
    """A button press that is not allowed now; the message says why."""


def allowed_actions(plan: PoolPlan) -> list[str]:
    """Pool actions valid in the plan's current state."""
    return [str(action) for action, states in ALLOWED_IN.items() if plan.state in states]


def request_control(user: Any, action: str, *, batch: Batch | None = None,
                    po: PurchaseOrder | None = None, pos: POQuerySet | None = None,
                    size: int | None = None, immediate: bool = False,
                    via: str = "") -> ControlAction:
    """Carry out one button press or raise ControlRefused (the refusal is recorded too).

    `pos`: the POs of `batch` that "retry failed" retries (the admin's selection; by
    default the whole batch, or `po`). `via` names where it was pressed when that is not
    the dashboard (e.g. "admin"); it is kept in the record's arguments.
    """
    arguments: dict[str, Any] = {
        k: v for k, v in (("size", size), ("immediate", immediate or None)) if v}
    if pos is not None:
        arguments["po_numbers"] = list(
            pos.retryable().values_list("po_number", flat=True)[:MAX_LISTED])
    if via:
        arguments["via"] = via
    try:
        _check(user, action, batch=batch, po=po, size=size)
        with transaction.atomic():
            if action in ALLOWED_IN:
                version = _change_plan(user, action, batch=batch, size=size,
                                       immediate=immediate)
                record = ControlAction.record(user, action, batch=batch, arguments={
                    **arguments, "plan_version": version})
            else:
                record = ControlAction.record(user, action, batch=batch, po=po,
                                              arguments=arguments)
                _apply_now(record, batch=batch, po=po, pos=pos)
    except ControlRefused as refusal:
        log.warning("refused %s by %s: %s", action, getattr(user, "username", "?"), refusal)
        ControlAction.record(user, action if action in Action.values else Action.PAUSE,
                             batch=batch, po=po, arguments={**arguments, "asked": action},
                             outcome=Outcome.REFUSED, outcome_message=str(refusal))
        raise
    if record.outcome == Outcome.PENDING:
        wake_hosts()
    return record


def start_from_command_line(batch: Batch, size: int | None) -> ControlAction:
    """`runpool --batch N`: start a batch without a signed-in operator (recorded as cli)."""
    changes: dict[str, Any] = dict(batch=batch, state=PoolPlan.State.RUNNING, reason="",
                                   immediate_stop=False)
    if size is not None:
        changes["pool_size"] = size
    with transaction.atomic():
        plan = PoolPlan.transition(**changes)
        assert plan is not None  # unconditional
        record = ControlAction.objects.create(
            username="cli", action=Action.START, batch=batch,
            arguments={"size": size, "plan_version": plan.version, "via": "runpool --batch"})
    return record


def wake_hosts() -> None:
    """Tell supervisors to look at the plan now (best effort: they also poll)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(WAKE_GROUP, {"type": "control.wake"})
    except Exception:  # the poll interval is the fallback
        log.info("wake-up not delivered; hosts will see the plan at their next poll",
                 exc_info=True)


def settle_applied(host: str, plan_version: int) -> None:
    """Mark pending pool actions up to `plan_version` as done by `host` (first host wins)."""
    pending = ControlAction.objects.filter(
        outcome=Outcome.PENDING, arguments__plan_version__lte=plan_version)
    for action in pending:
        action.settle(Outcome.DONE, f"applied by {host}", host=host)


def _check(user: Any, action: str, *, batch: Batch | None, po: PurchaseOrder | None,
           size: int | None) -> None:
    if not can_operate(user):
        raise ControlRefused("you do not have permission to control the pool")
    if action not in Action.values or action in NOT_POOL_ACTIONS:
        raise ControlRefused(f"unknown action {action!r}")
    if action in (Action.START, Action.RETRY_FAILED) and batch is None:
        raise ControlRefused(f"{action} needs a batch")
    if action == Action.CANCEL_PO and po is None:
        raise ControlRefused("cancel needs a PO")
    if size is not None and not MIN_SIZE <= size <= MAX_SIZE:
        raise ControlRefused(f"pool size must be {MIN_SIZE}-{MAX_SIZE}, not {size}")
    if action == Action.SCALE and size is None:
        raise ControlRefused("scale needs a size")
    if action == Action.START and batch is not None and (
            PoolPlan.current().state in ALLOWED_IN[Action.START]):
        refusal = start_refusal(batch)  # probes the site's session (cached for a minute)
        if refusal:
            raise ControlRefused(refusal)


def _apply_now(record: ControlAction, *, batch: Batch | None, po: PurchaseOrder | None,
               pos: POQuerySet | None) -> None:
    """Settle the actions that only touch the database."""
    if record.action == Action.RETRY_FAILED:
        assert batch is not None
        if pos is not None:
            chosen = pos.filter(batch=batch)
        elif po is not None:
            chosen = PurchaseOrder.objects.filter(pk=po.pk)
        else:
            chosen = batch.pos.all()
        count = chosen.retry()
        if po is not None and not count:
            raise ControlRefused(f"{po.po_number} is {po.status.lower()}: only POs that "
                                 "did not succeed are retried")
        record.settle(Outcome.DONE, f"{count} PO(s) queued again")
    elif record.action == Action.CANCEL_PO:
        assert po is not None
        _cancel_po(record, po)


def _change_plan(user: Any, action: str, *, batch: Batch | None, size: int | None,
                 immediate: bool) -> int:
    """Move the plan for a pool action; return its new version."""
    changes: dict[str, Any] = {}
    if action == Action.START:
        changes = dict(batch=batch, state=PoolPlan.State.RUNNING, reason="",
                       immediate_stop=False)
    elif action == Action.PAUSE:
        changes = dict(state=PoolPlan.State.PAUSED, reason=(
            f"paused by {getattr(user, 'username', '') or 'an operator'}"))
    elif action == Action.RESUME:
        changes = dict(state=PoolPlan.State.RUNNING, reason="")
    elif action == Action.STOP:
        changes = dict(state=PoolPlan.State.STOPPING, immediate_stop=immediate)
    if size is not None:
        changes["pool_size"] = size

    def allowed(plan: PoolPlan) -> None:
        if plan.state not in ALLOWED_IN[Action(action)]:
            raise ControlRefused(f"cannot {action} while the pool is {plan.state}")
        if action == Action.START:
            assert batch is not None
            if not batch.pos.filter(status=Status.QUEUED).exists():
                raise ControlRefused(f"batch {batch} has no queued POs (retry failed ones "
                                     "first)")

    plan = PoolPlan.transition(check=allowed, **changes)
    assert plan is not None  # unconditional: refusals raise
    return plan.version


def _cancel_po(record: ControlAction, po: PurchaseOrder) -> None:
    if PurchaseOrder.objects.filter(pk=po.pk).cancel(by=record.username or "an operator"):
        record.settle(Outcome.DONE, f"{po.po_number} cancelled")
    elif po.status == Status.RUNNING:
        # The host working on it finishes it CANCELLED when the attempt ends (recording).
        pass
    else:
        raise ControlRefused(f"{po.po_number} is already {po.status.lower()}")
