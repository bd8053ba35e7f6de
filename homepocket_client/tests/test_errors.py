from __future__ import annotations

from datetime import datetime, timezone

import pytest

from homepocket_client import (
    ERROR_CLASSES,
    Conflict,
    Forbidden,
    HomePocketError,
    InvalidArgument,
    InvalidToken,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryableError,
    ServerError,
    ServiceUnavailable,
    UnsupportedRequest,
)
from homepocket_client.errors import retry_after_seconds
from homepocket_client.tests.fake_server import SERVER_REQUEST_ID, envelope_error

# The server's registry (homepocket/api/errors.py) as the client must read it.
SERVER_CODES = [
    ("INVALID_ARGUMENT", 400, InvalidArgument),
    ("INVALID_SHORT_CODE", 400, InvalidArgument),
    ("SHORT_CODE_EXPIRED", 400, InvalidArgument),
    ("PHOTO_TOO_LARGE", 400, InvalidArgument),
    ("REPLAY_DETECTED", 400, InvalidArgument),
    ("INVALID_TOKEN", 401, InvalidToken),
    ("FORBIDDEN", 403, Forbidden),
    ("API_KEY_SUSPENDED", 403, Forbidden),
    ("COMPLIANCE_VIOLATION", 403, Forbidden),
    ("NOT_FOUND", 404, NotFound),
    ("BOOK_NOT_FOUND", 404, NotFound),
    ("DEVICE_NOT_FOUND", 404, NotFound),
    ("PHOTO_NOT_FOUND", 404, NotFound),
    ("INVALID_KEY", 404, NotFound),
    ("DELIVERY_NOT_FOUND", 404, NotFound),
    ("METHOD_NOT_ALLOWED", 405, UnsupportedRequest),
    ("NOT_ACCEPTABLE", 406, UnsupportedRequest),
    ("DEVICE_LIMIT_REACHED", 409, Conflict),
    ("DEVICE_ALREADY_REGISTERED", 409, Conflict),
    ("INVALID_STATE", 409, Conflict),
    ("RECOVERY_TARGET_NOT_EMPTY", 409, Conflict),
    ("PAYLOAD_TOO_LARGE", 413, PayloadTooLarge),
    ("UNSUPPORTED_MEDIA_TYPE", 415, UnsupportedRequest),
    ("RATE_LIMIT_EXCEEDED", 429, RateLimited),
    ("INTERNAL_ERROR", 500, ServerError),
    ("UNLOCK_REQUIRED", 503, ServiceUnavailable),
    ("RETRY_LATER", 503, ServiceUnavailable),
    ("DATABASE_ERROR", 503, ServiceUnavailable),
    ("S3_ERROR", 503, ServiceUnavailable),
    ("MAINTENANCE", 503, ServiceUnavailable),
]


@pytest.mark.parametrize(("code", "status", "error_class"), SERVER_CODES)
def test_it_raises_the_class_of_each_error_code(client, server, alice, code, status, error_class):
    server.reply(status, envelope_error(code, "Nope.", {"reason": "because"}))

    with pytest.raises(error_class) as raised:
        client.list_devices(alice)

    error = raised.value
    assert (error.code, error.status, error.message) == (code, status, "Nope.")
    assert error.details == {"reason": "because"}
    assert error.request_id == SERVER_REQUEST_ID


def test_it_knows_every_code_of_the_server_registry():
    from homepocket.api import errors as server_errors  # the tests run from the server's repository

    assert set(ERROR_CLASSES) == set(server_errors.ERROR_CODES)
    assert {code: status for code, status, _ in SERVER_CODES} == {
        code: entry.status for code, entry in server_errors.ERROR_CODES.items()
    }


def test_it_raises_rate_limited_with_retry_after(client, server, alice):
    server.reply(429, envelope_error("RATE_LIMIT_EXCEEDED"), headers={"Retry-After": "17"})

    with pytest.raises(RateLimited) as raised:
        client.list_devices(alice)

    assert raised.value.retry_after == 17
    assert raised.value.status == 429


def test_it_raises_service_unavailable_with_retry_after(client, server, alice):
    server.reply(503, envelope_error("DATABASE_ERROR"), headers={"Retry-After": "5"})

    with pytest.raises(ServiceUnavailable) as raised:
        client.list_devices(alice)

    assert raised.value.retry_after == 5
    assert isinstance(raised.value, RetryableError)


def test_it_leaves_retry_after_empty_when_the_server_gave_none(client, server, alice):
    server.reply(503, envelope_error("RETRY_LATER"))

    with pytest.raises(ServiceUnavailable) as raised:
        client.list_devices(alice)

    assert raised.value.retry_after is None


def test_it_maps_an_unknown_code_by_its_status(client, server, alice):
    server.reply(409, envelope_error("BOOK_ARCHIVED"))

    with pytest.raises(Conflict) as raised:
        client.list_devices(alice)

    assert raised.value.code == "BOOK_ARCHIVED"


def test_it_maps_an_unknown_5xx_to_server_error(client, server, alice):
    server.reply(502, envelope_error("UPSTREAM_BROKEN"))

    with pytest.raises(ServerError):
        client.list_devices(alice)


def test_it_maps_an_unknown_503_to_service_unavailable_with_retry_after(client, server, alice):
    server.reply(503, envelope_error("MAINTENANCE"), headers={"Retry-After": "60"})

    with pytest.raises(ServiceUnavailable) as raised:
        client.list_devices(alice)

    assert raised.value.retry_after == 60


def test_it_maps_an_unknown_4xx_to_the_base_error(client, server, alice):
    server.reply(418, envelope_error("TEAPOT"))

    with pytest.raises(HomePocketError) as raised:
        client.list_devices(alice)

    assert type(raised.value) is HomePocketError
    assert raised.value.status == 418


def test_it_reads_the_request_id_from_the_header_when_meta_lacks_it(client, server, alice):
    body = envelope_error("FORBIDDEN")
    del body["meta"]
    server.reply(403, body, headers={"X-Request-ID": "from-the-header"})

    with pytest.raises(Forbidden) as raised:
        client.list_devices(alice)

    assert raised.value.request_id == "from-the-header"


def test_it_reads_retry_after_given_as_an_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)

    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30
    assert retry_after_seconds("Wed, 01 Jan 2025 11:59:00 GMT", now=now) == 0


def test_it_ignores_a_garbled_retry_after():
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None
