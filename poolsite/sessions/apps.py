from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "poolsite.sessions"
    label = "site_sessions"  # "sessions" is django.contrib.sessions' label
    verbose_name = "Site sessions"
