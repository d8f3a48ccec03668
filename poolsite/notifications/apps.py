from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "poolsite.notifications"
    verbose_name = "Notifications"
