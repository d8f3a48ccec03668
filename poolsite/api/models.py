"""API tokens: a user's key for scripts, stored as a hash, shown once, revocable.

A token is `pst_` + 43 URL-safe characters (32 random bytes). Only its SHA-256 is kept,
so a copy of the database gives no working token; the first characters are kept as
the `prefix` so that the owner can tell their tokens apart. A token acts as its user:
the user's roles (viewers, operators) decide what it may do, at every request.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from poolsite.batches.models import ControlAction

SCHEME = "pst_"  # poolsite token: easy to spot in a leaked file or a secret scanner
PREFIX_LENGTH = len(SCHEME) + 8
# last_used_at is written at most this often per token (it is shown, not audited).
LAST_USED_RESOLUTION_SECONDS = 60


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at=None, user__is_active=True)


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="what the token is for, e.g. 'ERP export'")
    prefix = models.CharField(max_length=PREFIX_LENGTH, help_text="the token's first "
                              "characters, to tell tokens apart")
    secret_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @classmethod
    def issue(cls, user: Any, name: str, *, by: Any = None, via: str = "") -> tuple[ApiToken, str]:
        """Create a token for `user`; return it and its secret (never stored, shown once)."""
        secret = SCHEME + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name[:100] or "token",
                                   prefix=secret[:PREFIX_LENGTH], secret_sha256=digest(secret))
        token._audit(by if by is not None else user, ControlAction.Action.CREATE_API_TOKEN, via)
        return token, secret

    @classmethod
    def find(cls, secret: str) -> ApiToken | None:
        """The active token with this secret, its user loaded; None for anything else."""
        if not secret.startswith(SCHEME) or len(secret) > 200:
            return None
        return (cls.objects.active().select_related("user")
                .filter(secret_sha256=digest(secret)).first())

    def revoke(self, by: Any, *, via: str = "") -> bool:
        """Revoke once (audited); False when it already was."""
        now = timezone.now()
        done = ApiToken.objects.filter(pk=self.pk, revoked_at=None).update(
            revoked_at=now, revoked_by=getattr(by, "username", "") or via)
        if done:
            self.revoked_at = now
            self._audit(by, ControlAction.Action.REVOKE_API_TOKEN, via)
        return bool(done)

    def touch(self) -> None:
        """Note the use (at most once a minute, so that polling does not write each time)."""
        now = timezone.now()
        if (self.last_used_at is None
                or (now - self.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS):
            ApiToken.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now

    def _audit(self, by: Any, action: str, via: str) -> None:
        arguments: dict[str, Any] = {"token": self.prefix, "name": self.name,
                                     "owner": self.user.get_username()}
        if via:
            arguments["via"] = via
        ControlAction.record(by, action, arguments=arguments,
                             outcome=ControlAction.Outcome.DONE,
                             outcome_message=f"token {self.prefix}… of {arguments['owner']}")
