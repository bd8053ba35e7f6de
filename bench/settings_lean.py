"""Benchmark-only settings: the project's settings with another middleware stack on every path.

For bench/asgi_servers.py, to show what Django's MiddlewareMixin middlewares cost under ASGI:
each runs process_request and process_response through sync_to_async, one thread hop each.

- BENCH_MIDDLEWARE=lean (the default): only our natively async request context middleware, in
  MIDDLEWARE and in API_MIDDLEWARE (the stack homepocket/asgi.py gives every path but the admin).
- BENCH_MIDDLEWARE=mixin: the admin's MIDDLEWARE (Security, Session, Csrf, Authentication,
  Message, XFrameOptions: all MiddlewareMixin) on the API paths too.

Never for serving: "lean" drops CSRF, sessions, the admin's auth and the security headers.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from homepocket.settings import *  # noqa: F401,F403
from homepocket.settings import MIDDLEWARE as _SITE_MIDDLEWARE

_MODE = os.environ.get("BENCH_MIDDLEWARE", "lean")
if _MODE == "lean":
    MIDDLEWARE = ["homepocket.middleware.request_context_middleware"]
    API_MIDDLEWARE = MIDDLEWARE
elif _MODE == "mixin":
    API_MIDDLEWARE = list(_SITE_MIDDLEWARE)
else:
    raise ImproperlyConfigured(f"BENCH_MIDDLEWARE must be 'lean' or 'mixin', not {_MODE!r}")
