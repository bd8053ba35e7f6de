"""WebSocket routes of every app, collected in one place (CONVENTIONS 8). Apps add theirs here."""

from __future__ import annotations

from apps.relay.routing import websocket_urlpatterns as relay_websocket_urlpatterns

websocket_urlpatterns: list = [
    *relay_websocket_urlpatterns,
]
