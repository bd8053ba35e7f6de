"""Django's test-client calls, answered by the whole ASGI application (homepocket.asgi) in this process.

The share delivery API tests run through it twice: with the lean request route on (the request
endpoint answered before Django, apps/backups/delivery/fast_route.py) and off (every request
through Django and DRF), so both paths are held to the same assertions.
"""

from __future__ import annotations

import json as jsonlib

import httpx
from asgiref.sync import async_to_sync


class AsgiResponse:
    """What the tests read of a Django test response: status_code, json(), content, headers by name."""

    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        self.content = response.content
        self.headers = response.headers

    def json(self):
        return jsonlib.loads(self.content)

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def has_header(self, name: str) -> bool:
        return name in self.headers


class AsgiClient:
    def __init__(self, *, lean_route: bool, monkeypatch):
        from homepocket import asgi

        monkeypatch.setattr(asgi, "_delivery_route_on", lean_route)
        self.lean_route = lean_route
        self._app = asgi.application

    @staticmethod
    def _headers(extra: dict) -> dict[str, str]:
        headers = {}
        for name, value in extra.items():
            if name.startswith("HTTP_"):
                headers[name[5:].replace("_", "-").lower()] = value
        return headers

    async def _send(self, method: str, path: str, *, content: bytes | None, headers: dict[str, str]):
        transport = httpx.ASGITransport(app=self._app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, content=content, headers=headers)

    def request(self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str]) -> AsgiResponse:
        return AsgiResponse(async_to_sync(self._send)(method, path, content=content, headers=headers))

    def post(self, path: str, data=None, content_type: str = "application/json", **extra) -> AsgiResponse:
        if data is not None and not isinstance(data, (str, bytes)):
            data = jsonlib.dumps(data)
        body = data.encode() if isinstance(data, str) else data
        headers = {"content-type": content_type, **self._headers(extra)}
        return self.request("POST", path, content=body, headers=headers)

    def get(self, path: str, **extra) -> AsgiResponse:
        return self.request("GET", path, headers=self._headers(extra))
