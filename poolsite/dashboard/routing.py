"""WebSocket routes, wrapped the way channels' sample project does it."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from poolsite.dashboard.consumers import PoolConsumer

websocket_urlpatterns = [
    path("ws/pool/", PoolConsumer.as_asgi()),
]


def websocket_application() -> Any:
    """Origin check (settings.ALLOWED_HOSTS, read now), then session auth, then routes."""
    return AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
