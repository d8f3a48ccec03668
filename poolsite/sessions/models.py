"""A saved, signed-in session per site preset: where it is and what is known about it.

The session itself (cookies, local storage, or a whole user-data-dir) lives in a file
or folder under DATA_DIR/sessions/<site>/, owner-only; this row holds only what an
operator may see: who captured it when, how many cookies, the earliest expiry, and how
the last probe went. Never a cookie value.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone


class SiteSession(models.Model):
    """The session the workers of one site preset run on."""

    class Kind(models.TextChoices):
        STORAGE_STATE = "storage_state", "storage state"
        BASE_PROFILE = "base_profile", "browser profile"

    class Source(models.TextChoices):
        CAPTURE = "capture", "captured in a browser"
        UPLOAD = "upload", "uploaded"
        DEMO = "demo", "signed in automatically (demo)"

    site = models.CharField(max_length=50, unique=True, help_text="site preset name")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.STORAGE_STATE)
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.CAPTURE)
    path = models.CharField(max_length=500, help_text="relative to DATA_DIR/sessions")
    base_url = models.CharField(max_length=500, blank=True,
                                help_text="the deployment it was captured on")
    captured_at = models.DateTimeField(default=timezone.now)
    captured_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    captured_by_name = models.CharField(max_length=150, blank=True,
                                        help_text="kept when the account is deleted")
    cookie_count = models.PositiveIntegerField(default=0)
    cookie_hosts = models.JSONField(default=list, blank=True)
    earliest_expiry = models.DateTimeField(null=True, blank=True,
                                           help_text="empty: session cookies only")
    last_probe_at = models.DateTimeField(null=True, blank=True)
    last_probe_ok = models.BooleanField(null=True, blank=True)
    last_probe_message = models.CharField(max_length=500, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True,
                                      help_text="last probe that found it signed in")

    class Meta:
        ordering = ["site"]

    def __str__(self) -> str:
        return f"session for {self.site}"

    @property
    def full_path(self) -> Path:
        return Path(settings.DATA_DIR) / "sessions" / self.path

    def expired_at(self, now: datetime | None = None) -> bool:
        """Whether a cookie has expired by `now` (the site will likely sign it out)."""
        return self.earliest_expiry is not None and self.earliest_expiry <= (
            now or timezone.now())
