"""A bare ASGI hello world: the ceiling the sign route is compared with (bench/sign.py)."""

BODY = b'{"success":true,"data":{"hello":"world"}}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
