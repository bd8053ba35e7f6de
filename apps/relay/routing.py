"""The relay's WebSocket route (CONVENTIONS 8); homepocket/routing.py collects it."""

from django.urls import path

from apps.relay.consumers import RelayConsumer

websocket_urlpatterns = [
    path("ws/relay/<uuid:book_id>", RelayConsumer.as_asgi()),
]
