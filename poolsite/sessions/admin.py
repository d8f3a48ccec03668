"""Site sessions in the admin: read-only (the Site sessions page replaces and deletes)."""

from __future__ import annotations

from django.contrib import admin

from poolsite.batches.admin import ReadOnlyMixin
from poolsite.sessions.models import SiteSession


@admin.register(SiteSession)
class SiteSessionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("site", "kind", "source", "captured_at", "captured_by_name", "cookie_count",
                    "earliest_expiry", "last_probe_ok", "last_ok_at")
    list_filter = ("kind", "source", "last_probe_ok")
    exclude = ("path",)  # where the secret lives on the server is nobody's business here
