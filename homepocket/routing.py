"""WebSocket routes of every app, collected in one place (CONVENTIONS 8). Apps add theirs here."""

from __future__ import annotations

websocket_urlpatterns: list = []
