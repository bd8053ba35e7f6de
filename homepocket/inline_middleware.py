"""Django middleware that does no I/O, run inline on the event loop.

Under ASGI, Django's MiddlewareMixin runs every process_request/process_response through
sync_to_async: a hand-off to the request's worker thread and back, twice per middleware.
SecurityMiddleware and XFrameOptionsMiddleware only read the request and set headers, so running
them inline gives the same answers without the hand-offs (docs/PERFORMANCE.md prices them).
"""

from __future__ import annotations

from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware


class _InlineMixin:
    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        return self.process_response(request, response)


class InlineSecurityMiddleware(_InlineMixin, SecurityMiddleware):
    pass


class InlineXFrameOptionsMiddleware(_InlineMixin, XFrameOptionsMiddleware):
    pass
