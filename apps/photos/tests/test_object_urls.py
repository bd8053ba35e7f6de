"""The embedded mode's own object URLs enforce what S3 would: signature, expiry, method and exact size."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from apps.photos import storage
from apps.photos.models import Photo
from apps.photos.object_urls import ObjectURLs
from apps.photos.tests.conftest import ciphertext, object_request, photo_create, upload_start

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def error_code(response) -> str:
    return response.json()["error"]["code"]


def started_upload(client, persona, size: int) -> dict:
    return upload_start(client, persona, b"", size_bytes=size, sha256="0" * 64).json()["data"]


def with_query(url: str, **changes) -> str:
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {k: str(v) for k, v in changes.items()}
    return parts._replace(query=urlencode(query)).geturl()


def test_a_10_mib_plus_one_body_through_a_1_mib_url_is_refused_and_leaves_nothing(client, local_store, family, alice):
    started = started_upload(client, alice, MIB)
    response = object_request("PUT", started["upload_url"], ciphertext(10 * MIB + 1), {"Content-Type": "application/octet-stream"})
    assert response.status_code == 400 and error_code(response) == "PHOTO_TOO_LARGE"
    assert storage.object_size(started["s3_key"]) is None
    assert not list(local_store.rglob("*.part"))
    complete = client.post(f"/api/v1/photos/{started['photo_id']}/complete", **alice.auth())
    assert error_code(complete) == "INVALID_STATE"
    assert not Photo.objects.filter(state=Photo.State.AVAILABLE).exists()


def test_an_oversize_body_without_content_length_is_cut_off_after_the_signed_size(client, local_store, family, alice):
    started = started_upload(client, alice, MIB)

    async def chunks():
        for _ in range(11):
            yield ciphertext(MIB)  # chunked transfer: no Content-Length to refuse up front

    response = object_request("PUT", started["upload_url"], chunks(), {})
    assert response.status_code == 400 and error_code(response) == "PHOTO_TOO_LARGE"
    assert storage.object_size(started["s3_key"]) is None
    assert not list(local_store.rglob("*.part"))


def test_a_body_shorter_than_the_signed_size_leaves_nothing(client, local_store, family, alice):
    started = started_upload(client, alice, 1000)

    async def chunks():
        yield ciphertext(999)

    response = object_request("PUT", started["upload_url"], chunks(), {})
    assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"
    assert storage.object_size(started["s3_key"]) is None


def test_a_content_length_other_than_the_signed_size_is_refused_before_reading(client, local_store, family, alice):
    started = started_upload(client, alice, 1000)
    response = object_request("PUT", started["upload_url"], ciphertext(999))
    assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"
    assert response.headers["connection"] == "close"


def test_a_tampered_signature_is_forbidden(client, local_store, family, alice):
    started = started_upload(client, alice, 10)
    signature = parse_qs(urlparse(started["upload_url"]).query)["signature"][0]
    forged = with_query(started["upload_url"], signature=("A" if signature[0] != "A" else "B") + signature[1:])
    response = object_request("PUT", forged, ciphertext(10))
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    assert storage.object_size(started["s3_key"]) is None


def test_a_url_whose_size_was_raised_is_forbidden(client, local_store, family, alice):
    started = started_upload(client, alice, 10)
    response = object_request("PUT", with_query(started["upload_url"], size=10 * MIB), ciphertext(10 * MIB))
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"


def test_an_expired_upload_url_is_forbidden(client, local_store, family, alice, monkeypatch):
    started = started_upload(client, alice, 10)
    expires = int(parse_qs(urlparse(started["upload_url"]).query)["expires"][0])
    monkeypatch.setattr(storage, "now", lambda: expires + 1)
    response = object_request("PUT", started["upload_url"], ciphertext(10))
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    monkeypatch.setattr(storage, "now", lambda: expires)
    assert object_request("PUT", started["upload_url"], ciphertext(10)).status_code == 200


def test_a_download_url_cannot_upload_and_an_upload_url_cannot_download(client, local_store, family, alice):
    photo_id = photo_create(client, alice, ciphertext(10))
    download_url = client.get(f"/api/v1/photos/{photo_id}", **alice.auth()).json()["data"]["download_url"]
    assert error_code(object_request("PUT", with_query(download_url, size=10), ciphertext(10))) == "FORBIDDEN"
    started = started_upload(client, alice, 10)
    assert error_code(object_request("GET", started["upload_url"])) == "FORBIDDEN"


def test_an_upload_url_publishes_one_object_and_never_replaces_it(client, local_store, family, alice):
    started = started_upload(client, alice, 10)
    first = ciphertext(10)
    assert object_request("PUT", started["upload_url"], first).status_code == 200
    again = object_request("PUT", started["upload_url"], ciphertext(10))
    assert again.status_code == 409 and error_code(again) == "INVALID_STATE"
    with open(local_store / started["s3_key"], "rb") as handle:
        assert handle.read() == first


def test_an_unsigned_or_foreign_path_is_refused(client, local_store, family, alice):
    started = started_upload(client, alice, 10)
    bare = started["upload_url"].split("?")[0]
    assert error_code(object_request("PUT", bare, ciphertext(10))) == "FORBIDDEN"
    status, _ = raw_call("GET", "/objects/encrypted/../../db.sqlite3", b"size=0&expires=1&signature=x")
    assert status == 404


def raw_call(method: str, path: str, query: bytes) -> tuple[int, list[bytes]]:
    """Call the object routes with an exact ASGI scope (no client normalising the path)."""
    status, frames = 0, []

    async def call():
        nonlocal status
        scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                frames.append(message["body"])

        await ObjectURLs(None, api_version="1")(scope, receive, send)

    asyncio.run(call())
    return status, frames


def test_object_urls_are_not_served_when_photos_live_in_s3(client, s3_store, settings, tmp_path, family, alice):
    settings.OBJECTS_DIR = tmp_path
    query = storage.local_url_sign(method="GET", key=f"encrypted/{family.id}/{family.id}.enc", size=0, expires=2**40)
    response = object_request("GET", f"http://testserver/objects/encrypted/{family.id}/{family.id}.enc?{query}")
    assert response.status_code == 404 and error_code(response) == "NOT_FOUND"


def test_uploads_and_downloads_stream_in_bounded_chunks(client, local_store, family, alice, monkeypatch):
    """Memory stays flat: no write or response frame is ever the whole 5 MiB object."""
    writes: list[int] = []
    original_write = storage.LocalObjectWriter.write

    def recording_write(self, chunk):
        writes.append(len(chunk))
        return original_write(self, chunk)

    monkeypatch.setattr(storage.LocalObjectWriter, "write", recording_write)
    body = ciphertext(5 * MIB)

    async def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    started = started_upload(client, alice, len(body))
    assert object_request("PUT", started["upload_url"], chunks(), {}).status_code == 200
    assert max(writes) <= 320 * 1024 and sum(writes) == len(body)
    client.post(f"/api/v1/photos/{started['photo_id']}/complete", **alice.auth())
    download_url = client.get(f"/api/v1/photos/{started['photo_id']}", **alice.auth()).json()["data"]["download_url"]
    path, _, query = download_url.removeprefix("http://testserver").partition("?")
    status, frames = raw_call("GET", path, query.encode())
    assert status == 200
    assert b"".join(frames) == body
    assert max(len(frame) for frame in frames) <= storage.CHUNK_BYTES
