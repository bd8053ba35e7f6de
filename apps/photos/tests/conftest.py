"""Photos tests run against both stores in every run: the local directory and a moto S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx
import pytest

from apps.photos.object_urls import ObjectURLs
from apps.photos.tests.moto_server import MotoS3


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def store(request, settings, tmp_path):
    """The photos store of this test: "local" (embedded mode) or "s3" (moto)."""
    if request.param == "local":
        settings.S3_BUCKET = ""
        settings.OBJECTS_DIR = tmp_path / "objects"
    else:
        server = request.getfixturevalue("moto_s3")
        server.new_bucket()
        for name, value in server.settings().items():
            setattr(settings, name, value)
    return request.param


@pytest.fixture
def local_store(settings, tmp_path):
    settings.S3_BUCKET = ""
    settings.OBJECTS_DIR = tmp_path / "objects"
    return tmp_path / "objects"


@pytest.fixture
def s3_store(settings, moto_s3):
    moto_s3.new_bucket()
    for name, value in moto_s3.settings().items():
        setattr(settings, name, value)
    return moto_s3


def object_request(method: str, url: str, content=b"", headers: dict | None = None) -> httpx.Response:
    """Send to an upload/download URL: the in-process object routes for the test client's host, the network otherwise."""
    if url.startswith("http://testserver/"):
        async def call():
            transport = httpx.ASGITransport(app=ObjectURLs(None, api_version="1"))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, url, content=content, headers=headers)

        return asyncio.run(call())
    return httpx.request(method, url, content=content, headers=headers, timeout=30)


def ciphertext(size: int) -> bytes:
    return os.urandom(size)


def upload_start(client, persona, body: bytes, **overrides):
    payload = {
        "book_id": str(persona.book_id), "transaction_id": "tx-1", "size_bytes": len(body),
        "mime_type": "image/jpeg", "sha256": hashlib.sha256(body).hexdigest(), **overrides,
    }  # fmt: skip
    return client.post("/api/v1/photos/upload", payload, content_type="application/json", **persona.auth())


def photo_create(client, persona, body: bytes) -> str:
    """Upload start, PUT, complete: an available photo's id."""
    started = upload_start(client, persona, body).json()["data"]
    put = object_request("PUT", started["upload_url"], body, started["upload_headers"])
    assert put.status_code == 200, put.text
    done = client.post(f"/api/v1/photos/{started['photo_id']}/complete", **persona.auth())
    assert done.status_code == 200, done.json()
    return started["photo_id"]
