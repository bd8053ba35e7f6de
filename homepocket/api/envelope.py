"""The response envelope of every /api/ response (DESIGN.md, wire conventions)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from homepocket.api.request_id import request_id_get


def envelope_meta() -> dict[str, str]:
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": request_id_get(),
    }


def envelope_success(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "meta": envelope_meta()}


def envelope_error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "success": False,
        "error": {"code": code, "message": message, "details": details or {}},
        "meta": envelope_meta(),
    }
