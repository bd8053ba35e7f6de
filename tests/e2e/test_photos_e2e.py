"""Photos end to end, in both stores, with the client library against a real server process.

Each test runs twice: against a server in the embedded mode's store (its own signed object URLs
under var/) and against a server storing in S3 (a moto server of this module's own). The database
is the run's: SQLite in `make test`, PostgreSQL in `make test-distributed`.
"""

from __future__ import annotations

import os
import threading
import uuid

import httpx
import pytest
from cryptography.exceptions import InvalidTag

from apps.photos.tests.moto_server import MotoS3
from homepocket_client import (
    DeviceIdentity,
    HomePocketClient,
    InvalidArgument,
    NotFound,
    ObjectStoreError,
    photo_associated_data,
    photo_decrypt,
    photo_encrypt,
    photo_key_new,
)
from tests.harness.cluster import server_kinds, start_server
from tests.harness.live import LiveServer

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=server_kinds("embedded", "s3"))
def photo_server(request, tmp_path_factory):
    """One node on the embedded store, one on S3, and in the distributed run two S3 nodes behind nginx."""
    moto = MotoS3().start() if request.param != "embedded" else None
    # The embedded store: every S3_* emptied (the distributed run exports them, and a server with
    # S3_* but no bucket refuses to start, homepocket.E003).
    extra = moto.env() if moto else {name: "" for name in os.environ if name.startswith("S3_")}
    server = start_server("cluster" if request.param == "cluster" else "node",
                          tmp_path_factory.mktemp(f"photos-{request.param}"), extra_env=extra)  # fmt: skip
    server.mode = "embedded" if request.param == "embedded" else "s3"
    server.moto = moto
    yield server
    server.stop()
    if moto:
        moto.stop()


@pytest.fixture
def photo_api(photo_server):
    with HomePocketClient(photo_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def family_phone(photo_api) -> DeviceIdentity:
    phone = DeviceIdentity.new("family phone")
    photo_api.create_book(phone)
    return phone


def test_a_1_mib_photo_round_trips_encrypted_through_the_returned_urls(photo_api, family_phone, photo_server):
    key = photo_key_new()
    plaintext = os.urandom(MIB)
    aad = photo_associated_data(family_phone.book_id, "tx-42")
    blob = photo_encrypt(key, plaintext, associated_data=aad)
    assert plaintext not in blob
    photo = photo_api.photo_upload(family_phone, blob, transaction_id="tx-42")
    assert photo.size_bytes == len(blob) and photo.state == "available"
    fetched = photo_api.photo_download(family_phone, photo.photo_id)
    assert photo_decrypt(key, fetched, associated_data=aad) == plaintext
    with pytest.raises(InvalidTag):
        photo_decrypt(key, fetched, associated_data=photo_associated_data(family_phone.book_id, "tx-other"))
    listed = photo_api.photo_list(family_phone)
    assert [p.photo_id for p in listed.photos] == [photo.photo_id]
    assert (listed.photo_count, listed.total_bytes) == (1, len(blob))


def test_another_books_device_gets_photo_not_found(photo_api, family_phone):
    photo = photo_api.photo_upload(family_phone, os.urandom(1000), transaction_id="tx-1")
    outsider = DeviceIdentity.new("another family's phone")
    photo_api.create_book(outsider)
    for attempt in (photo_api.photo_get, photo_api.photo_delete, photo_api.photo_complete):
        with pytest.raises(NotFound) as refused:
            attempt(outsider, photo.photo_id)
        assert refused.value.code == "PHOTO_NOT_FOUND"
    urls = photo_api.photo_download_urls(outsider, [photo.photo_id])
    assert urls.photos == [] and urls.not_found == [photo.photo_id]
    assert photo_api.photo_download(family_phone, photo.photo_id)  # still there for its own book


def test_a_10_mib_plus_one_upload_through_a_smaller_url_leaves_no_object_and_no_photo(
    photo_api, family_phone, photo_server
):
    ticket = photo_api.photo_upload_request(family_phone, transaction_id="tx-big", ciphertext_size=MIB, sha256="0" * 64)
    oversized = os.urandom(10 * MIB + 1)
    headers = {"Content-Type": ticket.upload_headers["Content-Type"]}
    put = httpx.put(ticket.upload_url, content=oversized, headers=headers, timeout=60)
    if photo_server.mode == "embedded":
        # Our own store enforces the signed size itself.
        assert put.status_code == 400 and put.json()["error"]["code"] == "PHOTO_TOO_LARGE"
        with pytest.raises(Exception) as complete:
            photo_api.photo_complete(family_phone, ticket.photo_id)
        assert complete.value.code == "INVALID_STATE"
    else:
        # moto stores it (real S3 would refuse the Content-Length); complete's HEAD catches it.
        assert put.status_code == 200
        with pytest.raises(InvalidArgument) as complete:
            photo_api.photo_complete(family_phone, ticket.photo_id)
        assert complete.value.code == "PHOTO_TOO_LARGE"
        assert ticket.s3_key not in photo_server.moto.keys()
    with pytest.raises(NotFound):
        photo_api.photo_get(family_phone, ticket.photo_id)
    assert photo_api.photo_list(family_phone).photos == []


def test_deleting_twice_answers_photo_not_found_and_the_url_stops_working(photo_api, family_phone, photo_server):
    photo = photo_api.photo_upload(family_phone, os.urandom(5000), transaction_id="tx-del")
    download = photo_api.photo_get(family_phone, photo.photo_id)
    photo_api.photo_delete(family_phone, photo.photo_id)
    with pytest.raises(NotFound) as second:
        photo_api.photo_delete(family_phone, photo.photo_id)
    assert second.value.code == "PHOTO_NOT_FOUND"
    with pytest.raises(ObjectStoreError):
        photo_api.photo_object_get(download)  # the object itself is gone, not just the row
    assert photo_api.photo_list(family_phone).photo_count == 0


def test_the_cleanup_command_dry_run_lists_an_orphan_and_the_real_run_removes_it(photo_api, family_phone, photo_server):
    ticket = photo_api.photo_upload_request(family_phone, transaction_id="tx-o", ciphertext_size=10, sha256="0" * 64)
    photo_api.photo_object_put(ticket, os.urandom(10))
    photo_api.photo_delete(family_phone, ticket.photo_id)
    # The URL is still valid for its 300 s: a re-upload after the delete makes an orphan object.
    photo_api.photo_object_put(ticket, os.urandom(10))
    env = {"PHOTO_UPLOAD_URL_SECONDS": "0"}  # no grace period, so the fresh orphan is due
    dry = photo_server_manage(photo_server, env, "photos", "cleanup", "--dry-run")
    assert f"would remove orphan object {ticket.s3_key}" in dry
    assert f"removed orphan object {ticket.s3_key}" in photo_server_manage(photo_server, env, "photos", "cleanup")
    assert "0 orphan object(s)" in photo_server_manage(photo_server, env, "photos", "cleanup")


def photo_server_manage(server: LiveServer, env: dict[str, str], *args: str) -> str:
    import subprocess
    import sys

    from tests.harness.live import REPO

    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env={**server.env, **env}, check=True, capture_output=True, text=True
    )
    return done.stdout


def test_an_unknown_photo_is_not_found(photo_api, family_phone):
    with pytest.raises(NotFound):
        photo_api.photo_get(family_phone, uuid.uuid4())


def _each_in_its_own_client(url: str, calls: int, call) -> list:
    """Run `call(client)` `calls` times at once, each on its own connection; results or exceptions."""
    from concurrent.futures import ThreadPoolExecutor

    clients = [HomePocketClient(url, timeout=60) for _ in range(calls)]
    barrier = threading.Barrier(calls)

    def one(client):
        barrier.wait()
        try:
            return call(client)
        except Exception as exc:  # collected and asserted on by the caller
            return exc

    try:
        with ThreadPoolExecutor(calls) as pool:
            return list(pool.map(one, clients))
    finally:
        for client in clients:
            client.close()


def test_racing_completes_make_one_available_photo_counted_once(photo_api, family_phone, photo_server):
    blob = os.urandom(3000)
    ticket = photo_api.photo_upload_request(family_phone, transaction_id="tx-race", ciphertext_size=len(blob), sha256="0" * 64)
    photo_api.photo_object_put(ticket, blob)
    results = _each_in_its_own_client(photo_server.url, 8, lambda c: c.photo_complete(family_phone, ticket.photo_id))
    assert all(getattr(r, "photo_id", None) == ticket.photo_id for r in results), results
    page = photo_api.photo_list(family_phone)
    assert (page.photo_count, page.total_bytes) == (1, len(blob))


def test_racing_deletes_delete_once(photo_api, family_phone, photo_server):
    photo = photo_api.photo_upload(family_phone, os.urandom(2000), transaction_id="tx-del-race")
    results = _each_in_its_own_client(photo_server.url, 8, lambda c: c.photo_delete(family_phone, photo.photo_id))
    refused = [r for r in results if isinstance(r, NotFound) and r.code == "PHOTO_NOT_FOUND"]
    assert results.count(None) == 1 and len(refused) == 7, results
    page = photo_api.photo_list(family_phone)
    assert (page.photo_count, page.total_bytes) == (0, 0)
