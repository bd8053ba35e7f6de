"""The ASGI application: HTTP (Django, behind the body cap) and WebSocket (Channels) routing.

HTTP goes to one of two Django handlers by path: the admin (SITE_PATH_PREFIXES) through the full
MIDDLEWARE stack with sessions and CSRF, everything else through API_MIDDLEWARE, whose entries
all run on the event loop. Both resolve the same URLconf.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "homepocket.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

site_http = get_asgi_application()  # sets Django up before anything imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402

from apps.photos.object_urls import ObjectURLs  # noqa: E402
from homepocket.body_limit import BodyLimitMiddleware  # noqa: E402
from homepocket.lifespan import lifespan  # noqa: E402
from homepocket.routing import websocket_urlpatterns  # noqa: E402


class ApiASGIHandler(ASGIHandler):
    """Django's ASGI handler with API_MIDDLEWARE instead of MIDDLEWARE."""

    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap it only while the chain is built, at
        # import time, before any request is served.
        site_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = site_middleware


api_http = ApiASGIHandler()


# --- signing: POST /api/v1/signing/sign answered by a lean route before Django ------------------
from apps.signing import fast_route  # noqa: E402

_sign_route_on = settings.SIGNING_LEAN_ROUTE


# --- share delivery: POST /api/v1/backup/delivery/request answered by a lean route before Django --
from apps.backups.delivery import fast_route as delivery_route  # noqa: E402

_delivery_route_on = settings.DELIVERY_LEAN_ROUTE


async def http_by_path(scope, receive, send):
    if _sign_route_on and fast_route.handles(scope):
        return await fast_route.sign_route(scope, receive, send)
    if _delivery_route_on and delivery_route.handles(scope):
        return await delivery_route.request_route(scope, receive, send)
    handler = site_http if scope["path"].startswith(settings.SITE_PATH_PREFIXES) else api_http
    await handler(scope, receive, send)


http_app = ASGIStaticFilesHandler(http_by_path) if settings.SERVE_STATIC else http_by_path


application = ProtocolTypeRouter(
    {
        # Start and stop order of the process's parts: homepocket/lifespan.py (docs/cluster.md).
        "lifespan": lifespan,
        # Photo objects (embedded mode) stream up to 10 MiB past the 1 MiB API body cap, with
        # their own cap, signature and size checks (apps/photos/object_urls.py).
        "http": ObjectURLs(
            BodyLimitMiddleware(http_app, max_bytes=settings.MAX_REQUEST_BODY_BYTES, api_version=settings.API_VERSION),
            api_version=settings.API_VERSION,
        ),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
