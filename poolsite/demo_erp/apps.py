from django.apps import AppConfig


class DemoErpConfig(AppConfig):
    """Only adds management commands; the site itself needs no Django."""

    name = "poolsite.demo_erp"
    verbose_name = "Demo procurement site"
