"""Who is calling: `Authorization: Bearer <token>`, bad-token lock-outs, per-token rates.

    request ─▶ address locked out?  ─ yes ─▶ 429 (Retry-After), the token is not even read
             ─▶ token known, not revoked, user active? ─ no ─▶ 401, one more strike for
                                                              the address
             ─▶ request.user = the token's user (roles apply as on the pages)
             ─▶ over POOL_API_RATE_PER_MINUTE for this token? ─ yes ─▶ 429 (Retry-After)

The lock-out is django-axes's idea applied to tokens: POOL_API_BAD_TOKEN_LIMIT bad
tokens from one address (REMOTE_ADDR, never a forwarded header) lock that address out
of the API for POOL_API_BAD_TOKEN_COOLOFF_MINUTES, good tokens included, so that
guessing costs the guesser. Counts live in Django's cache (per process by default,
like the rate counts; a shared cache makes them shared).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.security import HttpBearer
from ninja.throttling import SimpleRateThrottle

from poolsite.api.models import ApiToken

log = logging.getLogger(__name__)


class LockedOut(Exception):
    """Too many bad tokens from this address: refused until `retry_after` seconds pass."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(f"too many bad API tokens from this address: try again in "
                         f"{self.retry_after} s")


def _address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _strikes_key(address: str) -> str:
    return f"poolsite.api.bad-tokens:{address}"


def lockout_remaining(address: str) -> int:
    """Seconds the address stays locked out; 0 when it is not."""
    record = cache.get(_strikes_key(address))
    if not record or record["count"] < settings.POOL_API_BAD_TOKEN_LIMIT:
        return 0
    return max(0, int(record["until"] - time.time()))


def strike(address: str) -> None:
    """Count one bad token for the address; the cool-off restarts with each strike."""
    cooloff = settings.POOL_API_BAD_TOKEN_COOLOFF_MINUTES * 60
    key = _strikes_key(address)
    record = cache.get(key) or {"count": 0}
    record = {"count": record["count"] + 1, "until": time.time() + cooloff}
    cache.set(key, record, cooloff)
    if record["count"] == settings.POOL_API_BAD_TOKEN_LIMIT:
        log.warning("API locked for %s after %s bad tokens (%s min)", address,
                    record["count"], settings.POOL_API_BAD_TOKEN_COOLOFF_MINUTES)


def reset_strikes(address: str) -> None:
    cache.delete(_strikes_key(address))


class TokenAuth(HttpBearer):
    """A Bearer token from ApiToken; the request then acts as the token's user."""

    def __call__(self, request: HttpRequest) -> Any:
        remaining = lockout_remaining(_address(request))
        if remaining:
            raise LockedOut(remaining)
        header = request.headers.get(self.header, "")
        if header and not header.lower().startswith("bearer "):
            strike(_address(request))  # a credential of another kind is a bad one too
            return None
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = ApiToken.find(token.strip())
        if found is None:
            strike(_address(request))
            log.info("bad API token from %s", _address(request))
            return None
        found.touch()
        request.user = found.user
        return found


class TokenRateThrottle(SimpleRateThrottle):
    """POOL_API_RATE_PER_MINUTE requests per token, over a sliding minute."""

    scope = "api-token"

    def get_rate(self) -> str:
        return f"{settings.POOL_API_RATE_PER_MINUTE}/min"

    def allow_request(self, request: HttpRequest) -> bool:
        # The rate is read per request, so that a changed setting (tests) takes effect.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request)

    def get_cache_key(self, request: HttpRequest) -> str | None:
        token = getattr(request, "auth", None)
        if not isinstance(token, ApiToken):
            return None
        return f"poolsite.api.rate:{token.pk}"
