from django.contrib import admin

from poolsite.notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """The audit of sends, read-only (targets are kept on the Notifications page, where
    their Apprise URLs stay masked)."""

    list_display = ("created_at", "event", "target_name", "shown_address", "state", "error")
    list_filter = ("event", "state")
    exclude = ("body",)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False
