"""The consumer in process (Channels' communicator): the refusal paths the live tests cannot reach."""

from __future__ import annotations

from unittest import mock

import pytest
from channels.testing import WebsocketCommunicator

from apps.relay import services
from apps.relay.hub import relay_hub_stop
from homepocket.asgi import application

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def hub_stopped_after():
    """Each test's event loop has its own hub; stop it before the loop closes."""
    yield
    await relay_hub_stop()


async def communicator_for(persona, **kwargs) -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {persona.book_token()}".encode())]
    return WebsocketCommunicator(application, f"/ws/relay/{persona.book_id}", headers=headers, **kwargs)


async def close_code_of(communicator: WebsocketCommunicator) -> int:
    connected, _ = await communicator.connect()
    assert connected  # accepted, so the close code reaches the client
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message["code"]


async def test_the_sixth_connect_within_ten_minutes_is_closed_with_4429(family, alice):
    for _ in range(5):
        communicator = await communicator_for(alice)
        connected, _ = await communicator.connect()
        assert connected and await communicator.receive_nothing(timeout=0.2)  # open, not closed
        await communicator.disconnect()
    assert await close_code_of(await communicator_for(alice)) == 4429


async def test_an_unreachable_relay_bus_refuses_with_retryable_1013(family, alice):
    from apps.relay.bus import BusUnavailable
    from apps.relay.hub import RelayHub

    with mock.patch.object(RelayHub, "join", side_effect=BusUnavailable("redis down")):
        assert await close_code_of(await communicator_for(alice)) == 1013


async def test_an_expired_token_closes_the_open_socket_with_4401(family, alice, bob):
    import time

    token = alice.book_token(lifetime_seconds=300, now=time.time() - 299.9)
    communicator = WebsocketCommunicator(
        application, f"/ws/relay/{alice.book_id}", headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    assert await close_code_of(communicator) == 4401


@pytest.mark.parametrize("path", ["/ws/relay/not-a-uuid", "/ws/elsewhere"])
async def test_a_path_no_route_matches_is_closed_with_4404(path):
    communicator = WebsocketCommunicator(application, path)
    assert await close_code_of(communicator) == 4404
