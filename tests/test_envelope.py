"""The envelope, request id and API-Version on every kind of response under /api/."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from apps.pairing.models import Book
from homepocket.asgi import application


def assert_error_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    assert response["API-Version"] == "1"
    return body


@pytest.mark.django_db
class TestEnvelope:
    def test_a_success_is_wrapped_with_meta(self, client, family, alice):
        response = client.get(f"/api/v1/books/{family.id}/devices", **alice.auth())
        body = response.json()
        assert body["success"] is True
        assert set(body) == {"success", "data", "meta"}
        assert body["meta"]["request_id"] == response["X-Request-ID"]
        assert body["meta"]["timestamp"].endswith("Z")

    def test_it_keeps_a_sane_request_id_from_the_client(self, client):
        response = client.get("/api/v1/nowhere", HTTP_X_REQUEST_ID="trace-1234abcd")
        assert response["X-Request-ID"] == "trace-1234abcd"
        assert response.json()["meta"]["request_id"] == "trace-1234abcd"

    @pytest.mark.parametrize("bad", ["x", "<script>alert(1)</script>", "a b c d e f g h", "z" * 200, "id\r\nSet-Cookie: x"])
    def test_it_replaces_an_insane_request_id(self, client, bad):
        response = client.get("/api/v1/nowhere", HTTP_X_REQUEST_ID=bad)
        assert response["X-Request-ID"] != bad
        assert len(response["X-Request-ID"]) == 32

    def test_api_version_is_on_every_response(self, client):
        for path in ("/health", "/metrics", "/api/schema/", "/admin/login/", "/nowhere"):
            assert client.get(path)["API-Version"] == "1", path

    def test_an_unknown_api_path_answers_not_found(self, client):
        assert_error_envelope(client.get("/api/v1/nowhere"), 404, "NOT_FOUND")

    def test_a_malformed_uuid_in_the_path_answers_not_found(self, client):
        assert_error_envelope(client.get("/api/v1/books/not-a-uuid/devices"), 404, "NOT_FOUND")

    def test_a_wrong_method_answers_method_not_allowed(self, client):
        response = client.delete("/api/v1/books")
        assert_error_envelope(response, 405, "METHOD_NOT_ALLOWED")
        assert "POST" in response["Allow"]

    def test_an_unacceptable_accept_header_answers_not_acceptable(self, client):
        response = client.post("/api/v1/books", data="{}", content_type="application/json", HTTP_ACCEPT="text/html")
        assert_error_envelope(response, 406, "NOT_ACCEPTABLE")

    def test_outside_the_api_django_pages_stay_html(self, client):
        response = client.get("/nowhere")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.urls("tests.faulty_urls")
class TestFailures:
    def test_a_crash_answers_internal_error_without_details(self, client):
        client.raise_request_exception = False
        body = assert_error_envelope(client.get("/api/v1/test/crash"), 500, "INTERNAL_ERROR")
        assert "secret" not in json.dumps(body)

    def test_throttling_answers_rate_limit_exceeded_with_retry_after(self, client):
        response = client.get("/api/v1/test/throttled")
        assert_error_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
        assert response["Retry-After"] == "42"

    def test_a_host_outside_allowed_hosts_answers_invalid_argument_not_a_crash(self, client):
        response = client.get("/api/v1/test/absolute", HTTP_HOST="evil.example")
        assert_error_envelope(response, 400, "INVALID_ARGUMENT")

    def test_malformed_json_answers_invalid_argument(self, client):
        response = client.post("/api/v1/test/echo", data=b'{"a": [1,', content_type="application/json")
        assert_error_envelope(response, 400, "INVALID_ARGUMENT")


@sync_to_async
def books_count() -> int:
    # Closes its connection: one left open in asgiref's worker thread would keep PostgreSQL from
    # dropping the test database at the end of the run.
    try:
        return Book.objects.count()
    finally:
        connection.close()


def asgi_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://127.0.0.1")


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
class TestBodyCap:
    """The 1 MiB cap sits in front of Django, so it is tested through the ASGI application."""

    async def test_a_2_mib_body_answers_payload_too_large_and_changes_nothing(self, alice):
        body = json.dumps({"device_id": str(uuid.uuid4()), "public_key": alice.key.public_key_b64, "device_name": "x" * (2 * 1024 * 1024)})
        async with asgi_client() as http:
            response = await http.post(
                "/api/v1/books", content=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {alice.registration_token()}", "X-Request-ID": "cap-test-0001"}
            )
        assert response.status_code == 413
        envelope = response.json()
        assert envelope["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert envelope["meta"]["request_id"] == response.headers["X-Request-ID"] == "cap-test-0001"
        assert response.headers["API-Version"] == "1"
        assert await books_count() == 0

    async def test_a_chunked_body_over_the_cap_is_refused_too(self, alice):
        async def chunks():
            for _ in range(3):
                yield b"x" * (512 * 1024)

        async with asgi_client() as http:
            response = await http.post("/api/v1/books", content=chunks(), headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"

    async def test_a_body_under_the_cap_goes_through(self, alice):
        body = json.dumps({"device_id": str(alice.device_id), "public_key": alice.key.public_key_b64, "device_name": "alice"})
        async with asgi_client() as http:
            response = await http.post(
                "/api/v1/books", content=body, headers={"Content-Type": "application/json", "Authorization": f"Bearer {alice.registration_token()}"}
            )
        assert response.status_code == 201


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
class TestTwoStacks:
    """The API goes through the hop-free stack, the admin through Django's full one."""

    async def test_the_api_gets_security_headers_and_no_session_machinery(self):
        async with asgi_client() as http:
            response = await http.get("/health")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["API-Version"] == "1"
        assert "Cookie" not in response.headers.get("Vary", "")

    async def test_the_admin_gets_sessions_and_csrf(self):
        async with asgi_client() as http:
            response = await http.get("/admin/login/")
        assert response.status_code == 200
        assert "csrftoken" in response.cookies
        assert response.headers["X-Frame-Options"] == "DENY"
        assert len(response.headers["X-Request-ID"]) == 32
