from django.apps import AppConfig


class BatchesConfig(AppConfig):
    name = "poolsite.batches"
    verbose_name = "Batches and runs"
