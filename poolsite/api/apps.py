from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "poolsite.api"
    label = "api"
    verbose_name = "HTTP API"
