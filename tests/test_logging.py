"""Logs are structured and redacted at the source: no token, key or body reaches the output."""

from __future__ import annotations

import io
import json
import logging

import pytest

from homepocket.logs import JsonFormatter, RedactingFilter, RequestIdFilter, redact

JWT = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMiLCJib29rX2lkIjoiNDU2In0.c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
PUBLIC_KEY = "4KDLu4oiewor4H7susNbjkPQEv0hiRxFIJVBzSKTvSM="


@pytest.mark.parametrize(
    "text,secret",
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("Authorization: Bearer opaque-token-value", "opaque-token-value"),
        ("Api-Key hp_live_abcdefghijklmnop", "hp_live_abcdefghijklmnop"),
        (f"token in text {JWT} here", JWT),
        (f"key={PUBLIC_KEY}", PUBLIC_KEY),
        (f"public key {PUBLIC_KEY}", PUBLIC_KEY),
        ("GET /x?ticket=abc123&x=1", "abc123"),
        ("share " + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9w", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9w"),
    ],
)
def test_it_redacts_secrets(text, secret):
    assert secret not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "book 3f2b8c1e-9d4a-4c6e-8f0a-1b2c3d4e5f60",
        "hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "route /api/v1/books/<uuid:book_id>/devices status 200",
    ],
)
def test_it_leaves_ids_hashes_and_routes_alone(text):
    assert redact(text) == text


def capture_logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.redaction")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_a_record_is_one_json_object_with_level_logger_and_request_id():
    logger, stream = capture_logger()
    logger.info("hello", extra={"route": "/health", "status": 200})
    record = json.loads(stream.getvalue())
    assert record["level"] == "INFO"
    assert record["logger"] == "test.redaction"
    assert record["message"] == "hello"
    assert record["route"] == "/health"
    assert "request_id" in record and "ts" in record


def test_it_redacts_arguments_extras_and_tracebacks():
    logger, stream = capture_logger()
    logger.info("auth header %s", f"Bearer {JWT}", extra={"header": f"Bearer {JWT}"})
    try:
        raise ValueError(f"bad key {PUBLIC_KEY}")
    except ValueError:
        logger.exception("failed")
    output = stream.getvalue()
    assert JWT not in output
    assert PUBLIC_KEY not in output
    assert "[REDACTED" in output


@pytest.fixture
def configured_output():
    """The output of the handler settings.LOGGING configured (its filters and formatter as is)."""
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.filters]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


@pytest.mark.django_db
def test_requests_leave_no_token_body_or_key_in_the_log_output(client, alice, configured_output):
    marker = "a-body-marker-that-must-not-be-logged"
    token = alice.registration_token()
    body = {"device_id": str(alice.device_id), "public_key": alice.key.public_key_b64, "device_name": marker}
    client.post("/api/v1/books", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    client.post("/api/v1/books", data="{broken " + marker, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    client.get("/api/v1/books/not-a-book/devices?token=" + token, HTTP_AUTHORIZATION=f"Bearer {token}")
    text = configured_output.getvalue()
    assert "homepocket.access" in text  # the access log did run through the configured handler
    assert token not in text
    assert marker not in text
    assert alice.key.public_key_b64 not in text


@pytest.mark.django_db
@pytest.mark.urls("tests.faulty_urls")
def test_a_crash_logs_its_traceback_with_the_secret_redacted(client, configured_output):
    client.raise_request_exception = False
    client.get("/api/v1/test/crash")
    text = configured_output.getvalue()
    assert "unhandled error in view" in text and "Traceback" in text
    assert "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln" not in text
    assert "[REDACTED" in text
