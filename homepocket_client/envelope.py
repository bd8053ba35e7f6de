"""The response envelope: unwrap `data` from a success, raise the typed error from a failure.

Every answer under /api/ is `{"success", "data" | "error", "meta"}`. Anything else (a proxy's
HTML error page, a truncated body, a different service on the port) is a TransportError: the
app cannot act on an error code that was never sent, so it must not guess one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from homepocket_client.errors import TransportError, error_from_response

REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True)
class Envelope:
    """A successful answer: its data, plus the status and headers tests and retry logic look at."""

    data: Any
    status: int
    request_id: str | None
    headers: httpx.Headers


def envelope_unwrap(response: httpx.Response) -> Envelope:
    """Return the success envelope of a response; raise its typed error, or TransportError."""
    status = response.status_code
    request_id = response.headers.get(REQUEST_ID_HEADER)

    def protocol_break(what: str) -> TransportError:
        # Never quote the body: it may be anything, and errors end up in logs.
        return TransportError(f"the answer (HTTP {status}) {what}", status=status, request_id=request_id)

    try:
        body = response.json()
    except ValueError:
        raise protocol_break(f"is not JSON ({response.headers.get('content-type', 'no content type')})") from None
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        raise protocol_break("is JSON but not an envelope")
    meta = body.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("request_id"), str):
        request_id = meta["request_id"]
    if body["success"]:
        if "data" not in body:
            raise protocol_break("is a success envelope without data")
        return Envelope(data=body["data"], status=status, request_id=request_id, headers=response.headers)
    error = body.get("error")
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        raise protocol_break("is an error envelope without an error code")
    message = error.get("message")
    details = error.get("details")
    raise error_from_response(
        code=error["code"],
        message=message if isinstance(message, str) else "",
        status=status,
        details=details if isinstance(details, dict) else {},
        request_id=request_id,
        retry_after_header=response.headers.get("Retry-After"),
    )
