"""The ASGI application: HTTP (Django, behind the body cap) and WebSocket (Channels) routing."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_http = get_asgi_application()  # sets Django up before anything imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from homepocket.body_limit import BodyLimitMiddleware  # noqa: E402
from homepocket.routing import websocket_urlpatterns  # noqa: E402

http_app = ASGIStaticFilesHandler(django_http) if settings.SERVE_STATIC else django_http

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(http_app, max_bytes=settings.MAX_REQUEST_BODY_BYTES, api_version=settings.API_VERSION),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
