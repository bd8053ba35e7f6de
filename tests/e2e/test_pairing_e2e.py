"""Pairing over a live server with the client library: A makes a code, B joins, A exchanges."""

from __future__ import annotations

import pytest

from homepocket_client import DeviceIdentity, InvalidArgument, InvalidToken, pairing_sas
from tests.harness.cluster import server_kinds

pytestmark = pytest.mark.e2e


@pytest.fixture(params=server_kinds("node"))
def live(request):
    """The session's node, and in the distributed run the session's cluster behind nginx too."""
    return request.getfixturevalue(f"live_{request.param}")


def test_a_new_phone_joins_the_book_and_both_see_each_other(live, api):
    alice = DeviceIdentity.new("alice's phone")
    api.create_book(alice)
    code = api.pairing_generate(alice)
    assert api.pairing_exchange(alice, code.short_code).completed is False

    bob = DeviceIdentity.new("bob's phone")
    match = api.pairing_verify(bob, code.short_code)
    assert match.book_id == alice.book_id == bob.book_id
    assert (match.peer_device_id, match.peer_public_key) == (alice.device_id, alice.key.public_key_bytes)

    exchange = api.pairing_exchange(alice, code.short_code, wait=5)
    assert exchange.completed
    assert (exchange.peer_device_id, exchange.peer_public_key) == (bob.device_id, bob.key.public_key_bytes)

    # Both phones show the same short authentication string when nobody swapped a key.
    assert pairing_sas(code.short_code, alice.key.public_key_bytes, exchange.peer_public_key) == pairing_sas(
        code.short_code, match.peer_public_key, bob.key.public_key_bytes
    )

    for viewer in (alice, bob):
        listing = api.list_devices(viewer)
        keys = {d.device_id: d.public_key for d in listing.devices}
        assert keys == {alice.device_id: alice.key.public_key_bytes, bob.device_id: bob.key.public_key_bytes}

    with pytest.raises(InvalidArgument) as second:
        api.pairing_verify(DeviceIdentity.new("carol"), code.short_code)
    assert second.value.code == "INVALID_SHORT_CODE"

    api.device_revoke(alice, bob.device_id)
    with pytest.raises(InvalidToken):
        api.list_devices(bob)

    log = live.log_text()
    assert '"route": "/api/v1/pairing/verify"' in log
    for secret in (f'"{code.short_code}"', alice.key.public_key_b64, bob.key.public_key_b64):
        assert secret not in log
