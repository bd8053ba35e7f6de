"""Fixtures for the client's own tests: a scripted fake server behind httpx.MockTransport.

Nothing here imports Django: these tests check the client against the documented wire format,
so they run wherever the client is installed. The personas follow the project's (alice, bob;
the `family` book).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from homepocket_client import DeviceIdentity, HomePocketClient
from homepocket_client.tests.fake_server import BASE_URL, FAMILY_BOOK_ID, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def client(server: FakeServer) -> Iterator[HomePocketClient]:
    with HomePocketClient(BASE_URL, transport=httpx.MockTransport(server)) as client:
        yield client


@pytest.fixture
def alice() -> DeviceIdentity:
    """Alice's phone, already the first device of the family book."""
    identity = DeviceIdentity.new("Alice's phone")
    identity.book_id = FAMILY_BOOK_ID
    return identity


@pytest.fixture
def bob() -> DeviceIdentity:
    """Bob's phone, not registered anywhere yet."""
    return DeviceIdentity.new("Bob's phone")
