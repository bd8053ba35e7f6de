"""OpenAPI generation that documents the envelope and every error code of every endpoint.

Views declare their own error codes in `error_codes`; the codes every endpoint can answer
(bad body, oversized body, wrong media type, crash, database down) are added here, so the
schema cannot drift from what the exception handler really sends.
"""

from __future__ import annotations

from collections import defaultdict

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import AllowAny

from homepocket.api.errors import ERROR_CODES

_BODY_METHODS = {"POST", "PUT", "PATCH"}

_META_SCHEMA = {
    "type": "object",
    "required": ["timestamp", "request_id"],
    "properties": {
        "timestamp": {"type": "string", "format": "date-time"},
        "request_id": {"type": "string", "description": "Equals the X-Request-ID response header."},
    },
}

_COMMON_HEADERS = {
    "X-Request-ID": {"schema": {"type": "string"}, "description": "The request id, also in meta.request_id."},
    "API-Version": {"schema": {"type": "string", "enum": ["1"]}, "description": "The API's major version."},
}


def envelope_success_schema(data_schema: dict) -> dict:
    return {
        "type": "object",
        "required": ["success", "data", "meta"],
        "properties": {"success": {"type": "boolean", "enum": [True]}, "data": data_schema, "meta": _META_SCHEMA},
    }


def envelope_error_schema(codes: list[str]) -> dict:
    return {
        "type": "object",
        "required": ["success", "error", "meta"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(codes)},
                    "message": {"type": "string"},
                    "details": {"type": "object", "additionalProperties": True},
                },
            },
            "meta": _META_SCHEMA,
        },
    }


_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "string"}, "description": "The limit of the policy closest to refusing."},
    "X-RateLimit-Remaining": {"schema": {"type": "string"}, "description": "Requests left in its window."},
    "X-RateLimit-Reset": {"schema": {"type": "string"}, "description": "Epoch seconds when a request is counted off again."},
}


class EnvelopeAutoSchema(AutoSchema):
    def error_codes(self) -> list[str]:
        codes = list(getattr(self.view, "error_codes", []))
        if self.method in _BODY_METHODS:
            codes += ["INVALID_ARGUMENT", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE"]
        if self.view.get_permissions() and not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes += ["INVALID_TOKEN"]
        if "{" in self.path:
            codes += ["NOT_FOUND"]  # a path parameter that is not well-formed matches no route
        if getattr(self.view, "rate_limit_scopes", ()):
            codes += ["RATE_LIMIT_EXCEEDED", "RETRY_LATER"]  # apps/quotas/throttling.py
        codes += ["NOT_ACCEPTABLE", "INTERNAL_ERROR", "DATABASE_ERROR"]
        return sorted(set(codes))

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status, response in responses.items():
            response.setdefault("headers", {}).update(_COMMON_HEADERS)
            for media in response.get("content", {}).values():
                media["schema"] = envelope_success_schema(media["schema"])
        by_status: dict[int, list[str]] = defaultdict(list)
        for code in self.error_codes():
            by_status[ERROR_CODES[code].status].append(code)
        for status, codes in sorted(by_status.items()):
            headers = dict(_COMMON_HEADERS)
            if status in (429, 503):
                headers["Retry-After"] = {"schema": {"type": "string"}, "description": "Seconds to wait."}
            if status == 429:
                headers.update(_RATE_LIMIT_HEADERS)
            responses[str(status)] = {
                "description": "; ".join(f"{c}: {ERROR_CODES[c].meaning}" for c in sorted(codes)),
                "headers": headers,
                "content": {"application/json": {"schema": envelope_error_schema(codes)}},
            }
        return responses


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.pairing.authentication.DeviceTokenAuthentication"
    name = "DeviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": (
                "A JWT the device signs with its own Ed25519 key (alg EdDSA) with claims sub (device id), "
                "book_id, iat and exp (at most 24 h after iat)."
            ),
        }


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apps.quotas.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key hp_<prefix>_<secret>`, made by `manage.py apikey create` (shown once).",
        }
