"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolsite.settings")
# Django must be set up before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from poolsite.dashboard.routing import websocket_application  # noqa: E402
from poolsite.request_limits import BodyLimitMiddleware  # noqa: E402

application = ProtocolTypeRouter({
    # Bodies over the limit are refused before Django reads them (request_limits).
    "http": BodyLimitMiddleware(django_asgi_app),
    "websocket": websocket_application(),
})
