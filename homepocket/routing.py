"""WebSocket routes of every app, collected in one place (CONVENTIONS 8). Apps add theirs here."""

from __future__ import annotations

from django.urls import re_path

from apps.relay.routing import websocket_urlpatterns as relay_websocket_urlpatterns
from homepocket.ws_not_found import websocket_not_found

websocket_urlpatterns: list = [
    *relay_websocket_urlpatterns,
    re_path(r"", websocket_not_found),  # last: any other path closes with 4404
]
