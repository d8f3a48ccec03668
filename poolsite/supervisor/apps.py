from django.apps import AppConfig


class SupervisorConfig(AppConfig):
    name = "poolsite.supervisor"
    verbose_name = "Pool supervisor"
