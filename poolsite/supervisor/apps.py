from django.apps import AppConfig


class SupervisorConfig(AppConfig):
    name = "poolsite.supervisor"
    verbose_name = "Pool supervisor"

    def ready(self) -> None:
        from poolsite.supervisor import checks  # noqa: F401  (registers the checks)
