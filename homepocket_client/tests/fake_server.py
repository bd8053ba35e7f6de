"""A scripted fake Home Pocket server for httpx.MockTransport, speaking the documented envelope."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx

BASE_URL = "http://homepocket.test"
FAMILY_BOOK_ID = uuid.UUID("0b0b0b0b-0000-4000-8000-00000000fa11")
SERVER_REQUEST_ID = "srv-request-0001"
TIMESTAMP = "2025-01-01T00:00:00.000Z"


def envelope_success(data: Any, *, request_id: str = SERVER_REQUEST_ID) -> dict[str, Any]:
    return {"success": True, "data": data, "meta": {"timestamp": TIMESTAMP, "request_id": request_id}}


def envelope_error(
    code: str, message: str = "refused", details: dict | None = None, *, request_id: str = SERVER_REQUEST_ID
) -> dict[str, Any]:
    return {
        "success": False,
        "error": {"code": code, "message": message, "details": details or {}},
        "meta": {"timestamp": TIMESTAMP, "request_id": request_id},
    }


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    request_id = body.get("meta", {}).get("request_id") if isinstance(body, dict) else None
    all_headers = {"X-Request-ID": request_id} if request_id else {}
    all_headers.update(headers or {})
    all_headers["Content-Type"] = "application/json"
    return httpx.Response(status, content=json.dumps(body).encode(), headers=all_headers)


class FakeServer:
    """Answers with the scripted response (or raises the scripted exception) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self.answer: Callable[[httpx.Request], httpx.Response] = lambda _: json_response(200, envelope_success({}))

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None, *, path: str | None = None) -> None:
        """Answer every request so, or only requests for `path` when it is given."""
        answer = lambda request: json_response(status, body, headers)  # noqa: E731
        if path is None:
            self.answer = answer
        else:
            self.routes[path] = answer

    def reply_raw(self, response: httpx.Response) -> None:
        self.answer = lambda request: response

    def fail_with(self, exc: Exception) -> None:
        def answer(request: httpx.Request) -> httpx.Response:
            raise exc

        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.routes.get(request.url.path, self.answer)(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]
