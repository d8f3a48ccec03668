"""Fixtures of the poolsite tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_session_preflight(settings: Any) -> None:
    """Press start without probing the site's session (the session tests turn it on).

    The controls and dashboard tests start batches whose site has no saved session
    (made-up URLs, or a host given an explicit storage state).
    """
    settings.POOL_SESSION_PREFLIGHT = False
