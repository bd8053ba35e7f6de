from __future__ import annotations

import base64
import logging
import uuid

import httpx
import pytest

from homepocket_client import HomePocketClient, InvalidToken, NotFound, TransportError
from homepocket_client.request_log import LOGGER_NAME, path_template
from homepocket_client.tests.fake_server import BASE_URL, envelope_error, envelope_success


@pytest.fixture
def debug_log(caplog):
    """Every logger at DEBUG, httpx's included: a token must not leak through any of them."""
    caplog.set_level(logging.DEBUG)
    return caplog


def _secrets_of(identity, server) -> list[str]:
    tokens = [request.headers["Authorization"].removeprefix("Bearer ") for request in server.requests]
    assert tokens
    private_key = identity.key.private_bytes()
    keys = [base64.b64encode(private_key).decode(), private_key.hex(), identity.key.public_key_b64]
    return [*tokens, *keys, identity.name]


def test_it_logs_no_token_key_or_body_at_debug(debug_log, server, bob):
    book_id = uuid.uuid4()
    created = {"book_id": str(book_id), "device_id": str(bob.device_id)}
    server.reply(201, envelope_success(created), path="/api/v1/books")
    server.reply(200, envelope_success({"devices": [], "total_count": 0}), path=f"/api/v1/books/{book_id}/devices")

    with HomePocketClient(BASE_URL, transport=httpx.MockTransport(server), log_level=logging.DEBUG) as client:
        client.create_book(bob)
        client.list_devices(bob)

    assert debug_log.records
    for secret in _secrets_of(bob, server):
        assert secret not in debug_log.text


def test_it_logs_no_token_when_the_token_is_refused(debug_log, client, server, alice):
    server.reply(401, envelope_error("INVALID_TOKEN"))

    with pytest.raises(InvalidToken):
        client.list_devices(alice)

    for secret in _secrets_of(alice, server):
        assert secret not in debug_log.text


def test_it_logs_no_token_when_the_connection_fails(debug_log, client, server, alice):
    server.fail_with(httpx.ConnectError("refused"))

    with pytest.raises(TransportError):
        client.list_devices(alice)

    for secret in _secrets_of(alice, server):
        assert secret not in debug_log.text


def test_it_logs_method_path_template_status_and_request_id(debug_log, client, server, alice):
    server.reply(404, envelope_error("BOOK_NOT_FOUND", request_id="srv-42"))

    with pytest.raises(NotFound):
        client.list_devices(alice)

    (record,) = [record for record in debug_log.records if record.name == LOGGER_NAME]
    assert record.levelno == logging.INFO
    assert (record.http_method, record.path_template, record.status) == ("GET", "/api/v1/books/{uuid}/devices", 404)
    assert (record.error_code, record.request_id) == ("BOOK_NOT_FOUND", "srv-42")
    assert str(alice.book_id) not in record.getMessage()


def test_it_logs_a_successful_request_at_debug_only(caplog, client, server, alice):
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)

    client.request("GET", "/api/v1/anything", identity=alice)

    assert [record for record in caplog.records if record.name == LOGGER_NAME] == []


def test_it_logs_a_failed_connection_as_a_warning(debug_log, client, server):
    server.fail_with(httpx.ConnectTimeout("slow"))

    with pytest.raises(TransportError):
        client.request("GET", "/api/v1/anything")

    (record,) = [record for record in debug_log.records if record.name == LOGGER_NAME]
    assert record.levelno == logging.WARNING
    assert record.status is None


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/v1/books", "/api/v1/books"),
        (f"/api/v1/books/{uuid.UUID(int=7)}/devices", "/api/v1/books/{uuid}/devices"),
        (f"/api/v1/books/{uuid.UUID(int=7).hex}", "/api/v1/books/{uuid}"),
        ("/api/v1/pairing/123456/confirm", "/api/v1/pairing/{number}/confirm"),
        ("/api/v1/photos/" + "A" * 43, "/api/v1/photos/{value}"),
        ("/api/v1/books?token=secret", "/api/v1/books"),
    ],
)
def test_it_logs_paths_as_templates_without_ids_codes_or_queries(path, template):
    assert path_template(path) == template
