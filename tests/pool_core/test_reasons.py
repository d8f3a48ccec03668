"""The engine's shared vocabulary: reason codes and typed pause reasons."""

from __future__ import annotations

import json
import pickle

from pool_core.reasons import (
    LEGACY_TIMEOUT,
    TIMEOUT_REASONS,
    Pause,
    PauseReason,
    Reason,
    http_reason,
    is_site_failure,
)


def test_reasons_are_the_strings_stored_before() -> None:
    assert Reason.BLOCKED_URL == "BLOCKED_URL" and f"{Reason.MEMORY_LIMIT}" == "MEMORY_LIMIT"
    assert json.dumps({"reason": Reason.NETWORK_ERROR}) == '{"reason": "NETWORK_ERROR"}'
    assert pickle.loads(pickle.dumps(Reason.TASK_TIMEOUT)) is Reason.TASK_TIMEOUT


def test_the_two_timeouts_are_apart_and_the_old_one_still_reads_as_a_timeout() -> None:
    assert Reason.NAV_TIMEOUT != Reason.TASK_TIMEOUT
    assert LEGACY_TIMEOUT == "TIMEOUT" and "TIMEOUT" not in set(Reason)
    assert {"NAV_TIMEOUT", "TASK_TIMEOUT", "TIMEOUT"} == set(TIMEOUT_REASONS)


def test_site_failures() -> None:
    assert is_site_failure(http_reason(503)) and is_site_failure(Reason.NETWORK_ERROR)
    assert is_site_failure(Reason.NETWORK)
    assert not is_site_failure(http_reason(404)) and not is_site_failure(Reason.NAV_TIMEOUT)


def test_a_pause_reads_back_from_its_text() -> None:
    outage = Pause(PauseReason.SITE_FAILING, "5 consecutive site-level failures")
    assert str(outage) == "SITE_FAILING: 5 consecutive site-level failures"
    assert Pause.from_text(str(outage)) == outage and outage.automatic
    wall = Pause(PauseReason.LOGIN_REQUIRED, "the session expired")
    assert Pause.from_text(str(wall)) == wall
    requested = Pause(PauseReason.REQUESTED)
    assert str(requested) == "paused by request" and not requested.automatic
    assert Pause.from_text("paused by otto") is None and Pause.from_text("") is None
