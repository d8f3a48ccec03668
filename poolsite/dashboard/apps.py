from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "poolsite.dashboard"
    verbose_name = "Live dashboard"
