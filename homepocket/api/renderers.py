"""The one renderer of the API: wraps a view's data, or the exception handler's error, in the envelope."""

from __future__ import annotations

from rest_framework.renderers import JSONRenderer

from homepocket.api.envelope import envelope_error, envelope_success


class EnvelopeRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and getattr(response, "exception", False):
            # envelope_exception_handler put {"code", "message", "details"} in data.
            body = envelope_error(data["code"], data["message"], data.get("details"))
        else:
            body = envelope_success(data)
        return super().render(body, accepted_media_type, renderer_context)
