"""The photos API against both stores: upload URLs, complete's size check, get, delete, list, batch."""

from __future__ import annotations

import hashlib
import re
import uuid
from urllib.parse import parse_qs, urlparse

import pytest

from apps.audit.models import AuditEvent, EventType
from apps.photos.models import BookPhotoUsage, Photo
from apps.photos.storage import object_size, photo_key
from apps.photos.tests.conftest import ciphertext, object_request, photo_create, upload_start

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def error_code(response) -> str:
    return response.json()["error"]["code"]


def test_upload_answers_a_signed_url_for_the_books_key(client, store, family, alice):
    body = ciphertext(1000)
    response = upload_start(client, alice, body)
    assert response.status_code == 201
    data = response.json()["data"]
    assert data["s3_key"] == f"encrypted/{family.id}/{data['photo_id']}.enc"
    assert data["upload_method"] == "PUT"
    assert data["upload_headers"]["Content-Length"] == "1000"
    assert data["expires_in"] == 300
    assert Photo.objects.get(pk=data["photo_id"]).state == Photo.State.PENDING


def test_the_s3_upload_url_signs_the_content_length(client, s3_store, family, alice):
    data = upload_start(client, alice, ciphertext(1234)).json()["data"]
    query = parse_qs(urlparse(data["upload_url"]).query)
    # Real S3 recomputes the signature over the signed headers: any other Content-Length fails it.
    assert "content-length" in query["X-Amz-SignedHeaders"][0].split(";")
    assert data["upload_headers"]["Content-Length"] == "1234"


def test_the_embedded_upload_url_signs_the_size(client, local_store, family, alice):
    data = upload_start(client, alice, ciphertext(1234)).json()["data"]
    query = parse_qs(urlparse(data["upload_url"]).query)
    assert query["size"] == ["1234"] and query["signature"][0]


def test_a_photo_over_10_mib_is_refused_before_any_url(client, store, family, alice):
    response = upload_start(client, alice, b"", size_bytes=10 * MIB + 1, sha256="0" * 64)
    assert response.status_code == 400
    assert error_code(response) == "PHOTO_TOO_LARGE"
    assert "upload_url" not in response.content.decode()
    assert not Photo.objects.exists()


def test_exactly_10_mib_is_allowed(client, store, family, alice):
    assert upload_start(client, alice, b"", size_bytes=10 * MIB, sha256="0" * 64).status_code == 201


@pytest.mark.parametrize(
    "field,value",
    [("size_bytes", 0), ("sha256", "xyz"), ("mime_type", "not a type"), ("transaction_id", ""), ("book_id", "nope")],
)
def test_malformed_upload_fields_are_invalid_argument_and_change_nothing(client, local_store, family, alice, field, value):
    response = upload_start(client, alice, ciphertext(10), **{field: value})
    assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"
    assert not Photo.objects.exists()


def test_an_upload_for_another_book_is_forbidden(client, local_store, family, neighbours, carol):
    response = upload_start(client, carol, ciphertext(10), book_id=str(family.id))
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"


def test_complete_makes_the_photo_available_and_counts_the_books_usage(
    client, store, family, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        photo_id = photo_create(client, alice, ciphertext(2048))
    photo = Photo.objects.get(pk=photo_id)
    assert photo.state == Photo.State.AVAILABLE and photo.completed_at is not None
    usage = BookPhotoUsage.objects.get(book=family)
    assert (usage.photo_count, usage.total_bytes) == (1, 2048)
    event = AuditEvent.objects.get(event_type=EventType.PHOTO_UPLOADED)
    assert str(photo_id) not in event.target and str(family.id) not in event.book


def test_completing_twice_answers_the_same_photo_and_counts_once(
    client, store, family, alice, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        photo_id = photo_create(client, alice, ciphertext(100))
        again = client.post(f"/api/v1/photos/{photo_id}/complete", **alice.auth())
    assert again.status_code == 200 and again.json()["data"]["photo_id"] == photo_id
    assert BookPhotoUsage.objects.get(book=family).photo_count == 1
    assert AuditEvent.objects.filter(event_type=EventType.PHOTO_UPLOADED).count() == 1


def test_complete_before_the_upload_is_invalid_state(client, store, family, alice):
    started = upload_start(client, alice, ciphertext(100)).json()["data"]
    response = client.post(f"/api/v1/photos/{started['photo_id']}/complete", **alice.auth())
    assert response.status_code == 409 and error_code(response) == "INVALID_STATE"
    assert Photo.objects.get(pk=started["photo_id"]).state == Photo.State.PENDING


def test_against_moto_a_larger_upload_is_caught_at_complete_and_deleted(client, s3_store, family, alice):
    started = upload_start(client, alice, ciphertext(MIB)).json()["data"]
    oversized = ciphertext(10 * MIB + 1)
    # moto does not enforce the signed Content-Length (real S3 does): the object lands.
    put = object_request("PUT", started["upload_url"], oversized, {"Content-Type": "application/octet-stream"})
    assert put.status_code == 200
    assert started["s3_key"] in s3_store.keys()
    response = client.post(f"/api/v1/photos/{started['photo_id']}/complete", **alice.auth())
    assert response.status_code == 400 and error_code(response) == "PHOTO_TOO_LARGE"
    assert started["s3_key"] not in s3_store.keys()
    assert not Photo.objects.filter(pk=started["photo_id"]).exists()
    assert not BookPhotoUsage.objects.filter(book=family, photo_count__gt=0).exists()


def test_against_moto_a_shorter_upload_is_caught_at_complete_and_deleted(client, s3_store, family, alice):
    started = upload_start(client, alice, ciphertext(1000)).json()["data"]
    object_request("PUT", started["upload_url"], ciphertext(999), {"Content-Type": "application/octet-stream"})
    response = client.post(f"/api/v1/photos/{started['photo_id']}/complete", **alice.auth())
    assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"
    assert response.json()["error"]["details"]["reason"] == "size_mismatch"
    assert started["s3_key"] not in s3_store.keys()
    assert not Photo.objects.filter(pk=started["photo_id"]).exists()


def test_get_answers_a_download_url_that_serves_the_uploaded_bytes(client, store, family, alice, bob):
    body = ciphertext(300_000)
    photo_id = photo_create(client, alice, body)
    response = client.get(f"/api/v1/photos/{photo_id}", **bob.auth())
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {"photo_id", "download_url", "expires_in", "size_bytes", "created_at"}
    assert data["size_bytes"] == len(body)
    fetched = object_request("GET", data["download_url"])
    assert fetched.status_code == 200 and fetched.content == body


def test_another_books_device_gets_photo_not_found(client, store, family, alice, neighbours, carol):
    photo_id = photo_create(client, alice, ciphertext(100))
    for response in (
        client.get(f"/api/v1/photos/{photo_id}", **carol.auth()),
        client.delete(f"/api/v1/photos/{photo_id}", **carol.auth()),
        client.post(f"/api/v1/photos/{photo_id}/complete", **carol.auth()),
    ):
        assert response.status_code == 404 and error_code(response) == "PHOTO_NOT_FOUND"
    assert Photo.objects.filter(pk=photo_id, state=Photo.State.AVAILABLE).exists()


def test_a_pending_photo_is_not_found(client, store, family, alice):
    started = upload_start(client, alice, ciphertext(100)).json()["data"]
    response = client.get(f"/api/v1/photos/{started['photo_id']}", **alice.auth())
    assert response.status_code == 404 and error_code(response) == "PHOTO_NOT_FOUND"


def test_delete_removes_the_object_and_the_row_and_twice_answers_photo_not_found(
    client, store, family, alice, django_capture_on_commit_callbacks
):
    photo_id = photo_create(client, alice, ciphertext(500))
    key = photo_key(book_id=family.id, photo_id=photo_id)
    assert object_size(key) == 500
    with django_capture_on_commit_callbacks(execute=True):
        first = client.delete(f"/api/v1/photos/{photo_id}", **alice.auth())
    assert first.status_code == 200 and first.json()["data"] == {"photo_id": photo_id, "deleted": True}
    assert object_size(key) is None
    assert not Photo.objects.filter(pk=photo_id).exists()
    assert (BookPhotoUsage.objects.get(book=family).photo_count, BookPhotoUsage.objects.get(book=family).total_bytes) == (0, 0)
    second = client.delete(f"/api/v1/photos/{photo_id}", **alice.auth())
    assert second.status_code == 404 and error_code(second) == "PHOTO_NOT_FOUND"
    assert AuditEvent.objects.filter(event_type=EventType.PHOTO_DELETED).count() == 1
    gone = client.get(f"/api/v1/photos/{photo_id}", **alice.auth())
    assert error_code(gone) == "PHOTO_NOT_FOUND"


def test_download_urls_answers_found_photos_and_lists_the_others(client, store, family, alice, neighbours, carol):
    mine = [photo_create(client, alice, ciphertext(10)) for _ in range(2)]
    theirs = photo_create(client, carol, ciphertext(10))
    unknown = str(uuid.uuid4())
    response = client.post(
        "/api/v1/photos/download_urls", {"photo_ids": [mine[0], theirs, unknown, mine[1]]},
        content_type="application/json", **alice.auth(),
    )  # fmt: skip
    assert response.status_code == 200
    data = response.json()["data"]
    assert [p["photo_id"] for p in data["photos"]] == mine
    assert data["not_found"] == [theirs, unknown]


def test_download_urls_counts_each_photo_against_the_download_quota(client, local_store, family, alice):
    ids = [photo_create(client, alice, ciphertext(10)) for _ in range(3)]
    single = client.get(f"/api/v1/photos/{ids[0]}", **alice.auth())
    before = int(single.headers["X-RateLimit-Remaining"])
    batch = client.post("/api/v1/photos/download_urls", {"photo_ids": ids}, content_type="application/json", **alice.auth())
    assert int(batch.headers["X-RateLimit-Remaining"]) == before - 3


def test_download_urls_takes_at_most_50_ids(client, local_store, family, alice):
    ids = [str(uuid.uuid4()) for _ in range(51)]
    response = client.post("/api/v1/photos/download_urls", {"photo_ids": ids}, content_type="application/json", **alice.auth())
    assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"


def test_the_book_list_pages_through_available_photos_newest_first(client, store, family, alice, bob):
    ids = [photo_create(client, alice, ciphertext(10 + i)) for i in range(5)]
    upload_start(client, alice, ciphertext(10))  # pending: not listed
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        data = client.get(f"/api/v1/books/{family.id}/photos", query, **bob.auth()).json()["data"]
        seen += [p["photo_id"] for p in data["photos"]]
        assert "download_url" not in str(data)
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert (data["photo_count"], data["total_bytes"]) == (5, sum(10 + i for i in range(5)))


def test_the_book_list_refuses_another_book_and_a_bad_cursor(client, local_store, family, alice, neighbours, carol):
    assert error_code(client.get(f"/api/v1/books/{family.id}/photos", **carol.auth())) == "FORBIDDEN"
    bad = client.get(f"/api/v1/books/{family.id}/photos", {"cursor": "!!!"}, **alice.auth())
    assert bad.status_code == 400 and error_code(bad) == "INVALID_ARGUMENT"


def test_the_upload_counts_against_the_photos_upload_quota(client, local_store, family, alice):
    first = upload_start(client, alice, ciphertext(10))
    second = upload_start(client, alice, ciphertext(10))
    assert int(first.headers["X-RateLimit-Remaining"]) - 1 == int(second.headers["X-RateLimit-Remaining"])


def test_the_s3_key_is_the_documented_shape(client, local_store, family, alice):
    data = upload_start(client, alice, ciphertext(10)).json()["data"]
    assert re.fullmatch(r"encrypted/[0-9a-f-]{36}/[0-9a-f-]{36}\.enc", data["s3_key"])
    assert data["s3_key"] == photo_key(book_id=family.id, photo_id=data["photo_id"])


def test_a_host_outside_allowed_hosts_is_invalid_argument_not_a_crash(client, local_store, settings, family, alice):
    settings.ALLOWED_HOSTS = ["photos.example"]
    response = upload_start(client, alice, ciphertext(10))
    assert response.status_code == 400 and error_code(response) == "INVALID_ARGUMENT"
