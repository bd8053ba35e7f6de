"""Answers that are not the protocol, and no answer at all, are TransportError."""

from __future__ import annotations

import socket

import httpx
import pytest

from homepocket_client import HomePocketClient, TransportError
from homepocket_client.tests.fake_server import envelope_success


def test_it_raises_transport_error_on_a_non_json_answer(client, server, alice):
    server.reply_raw(httpx.Response(502, content=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}))

    with pytest.raises(TransportError) as raised:
        client.list_devices(alice)

    assert raised.value.status == 502
    assert raised.value.code == "TRANSPORT_ERROR"
    assert "Bad Gateway" not in str(raised.value)


def test_it_raises_transport_error_on_json_that_is_not_an_envelope(client, server, alice):
    server.reply(200, {"devices": []})

    with pytest.raises(TransportError, match="not an envelope"):
        client.list_devices(alice)


def test_it_raises_transport_error_on_an_error_envelope_without_a_code(client, server, alice):
    server.reply(400, {"success": False, "error": "bad", "meta": {}})

    with pytest.raises(TransportError, match="without an error code"):
        client.list_devices(alice)


def test_it_raises_transport_error_when_the_data_lacks_documented_fields(client, server, alice):
    server.reply(200, envelope_success({"devices": [{"device_id": "not-a-uuid"}], "total_count": 1}))

    with pytest.raises(TransportError, match="documented shape") as raised:
        client.list_devices(alice)

    assert raised.value.request_id == "srv-request-0001"


def test_it_raises_transport_error_when_the_connection_fails(client, server, alice):
    server.fail_with(httpx.ConnectError("[Errno 111] Connection refused"))

    with pytest.raises(TransportError, match="ConnectError") as raised:
        client.list_devices(alice)

    assert raised.value.status is None
    assert raised.value.request_id == server.last.headers["X-Request-ID"]


def test_it_raises_transport_error_on_a_timeout(client, server, alice):
    server.fail_with(httpx.ReadTimeout("timed out"))

    with pytest.raises(TransportError, match="ReadTimeout"):
        client.list_devices(alice)


def test_it_raises_transport_error_when_nothing_listens_on_the_port(alice):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.

    with HomePocketClient(f"http://127.0.0.1:{port}", timeout=2.0) as client:
        with pytest.raises(TransportError):
            client.list_devices(alice)
