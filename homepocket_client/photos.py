"""Photos: client-side AES-GCM, and the typed answers of the photos API.

The server never sees a photo: the app encrypts it with a key of the book's (kept on the devices,
never sent), uploads the ciphertext through the URL the server issues, and decrypts after
download. The blob format is `version (1 byte, 0x01) || nonce (12 bytes) || AES-256-GCM ciphertext+tag`;
the associated data binds the blob to its book and transaction, so a blob moved to another
transaction or book fails to decrypt instead of showing the wrong receipt.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from homepocket_client.books import documented_shape
from homepocket_client.envelope import Envelope
from homepocket_client.errors import HomePocketError

PHOTO_MAX_BYTES = 10 * 1024 * 1024
BLOB_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
BLOB_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES


def photo_key_new() -> bytes:
    """A fresh 256-bit photo key (the app keeps it with the book's other keys)."""
    return AESGCM.generate_key(bit_length=256)


def photo_associated_data(book_id: uuid.UUID | str, transaction_id: str) -> bytes:
    return f"homepocket-photo-v1|{book_id}|{transaction_id}".encode()


def photo_encrypt(key: bytes, plaintext: bytes, *, associated_data: bytes = b"") -> bytes:
    """Encrypt a photo into a blob (random 96-bit nonce: one key encrypts well under 2^32 photos)."""
    if len(plaintext) + BLOB_OVERHEAD > PHOTO_MAX_BYTES:
        raise ValueError(f"the encrypted photo would exceed {PHOTO_MAX_BYTES} bytes")
    nonce = os.urandom(NONCE_BYTES)
    return bytes([BLOB_VERSION]) + nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def photo_decrypt(key: bytes, blob: bytes, *, associated_data: bytes = b"") -> bytes:
    """Decrypt a blob; cryptography's InvalidTag when it was altered, or is another book's or transaction's."""
    if len(blob) < BLOB_OVERHEAD or blob[0] != BLOB_VERSION:
        raise ValueError("not a photo blob of a version this library knows")
    nonce = blob[1 : 1 + NONCE_BYTES]
    return AESGCM(key).decrypt(nonce, blob[1 + NONCE_BYTES :], associated_data)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ObjectStoreError(HomePocketError):
    """The object store (S3, or the embedded server's object URLs) refused an upload or download.

    `code` is the server's error code when the embedded store answered with an envelope (for
    example PHOTO_TOO_LARGE, FORBIDDEN for a bad or expired signature), else OBJECT_STORE_ERROR.
    """


@dataclass(frozen=True)
class PhotoUploadTicket:
    """Where and how to upload one photo's ciphertext, and until when (seconds from issue)."""

    photo_id: uuid.UUID
    s3_key: str
    upload_url: str
    upload_method: str
    upload_headers: dict[str, str]
    expires_in: int


@dataclass(frozen=True)
class PhotoInfo:
    photo_id: uuid.UUID
    transaction_id: str
    size_bytes: int
    mime_type: str
    sha256: str
    created_at: datetime
    state: str = "available"


@dataclass(frozen=True)
class PhotoDownload:
    photo_id: uuid.UUID
    download_url: str
    expires_in: int
    size_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class PhotoDownloadUrls:
    photos: list[PhotoDownload]
    not_found: list[uuid.UUID]


@dataclass(frozen=True)
class PhotoPage:
    photos: list[PhotoInfo]
    next_cursor: str | None
    photo_count: int
    total_bytes: int


def photo_upload_ticket_parse(envelope: Envelope) -> PhotoUploadTicket:
    with documented_shape("photo upload", envelope):
        d = envelope.data
        return PhotoUploadTicket(
            photo_id=uuid.UUID(d["photo_id"]), s3_key=d["s3_key"], upload_url=d["upload_url"],
            upload_method=d["upload_method"], upload_headers=dict(d["upload_headers"]), expires_in=int(d["expires_in"]),
        )  # fmt: skip


def _info(d: dict) -> PhotoInfo:
    return PhotoInfo(
        photo_id=uuid.UUID(d["photo_id"]), transaction_id=d["transaction_id"], size_bytes=int(d["size_bytes"]),
        mime_type=d["mime_type"], sha256=d["sha256"], created_at=datetime.fromisoformat(d["created_at"]),
        state=d.get("state", "available"),
    )  # fmt: skip


def photo_info_parse(envelope: Envelope) -> PhotoInfo:
    with documented_shape("photo", envelope):
        return _info(envelope.data)


def _download(d: dict) -> PhotoDownload:
    return PhotoDownload(
        photo_id=uuid.UUID(d["photo_id"]), download_url=d["download_url"], expires_in=int(d["expires_in"]),
        size_bytes=int(d["size_bytes"]), created_at=datetime.fromisoformat(d["created_at"]),
    )  # fmt: skip


def photo_download_parse(envelope: Envelope) -> PhotoDownload:
    with documented_shape("photo download", envelope):
        return _download(envelope.data)


def photo_download_urls_parse(envelope: Envelope) -> PhotoDownloadUrls:
    with documented_shape("photo download urls", envelope):
        d = envelope.data
        return PhotoDownloadUrls(photos=[_download(p) for p in d["photos"]], not_found=[uuid.UUID(x) for x in d["not_found"]])


def photo_page_parse(envelope: Envelope) -> PhotoPage:
    with documented_shape("photo list", envelope):
        d = envelope.data
        return PhotoPage(
            photos=[_info(p) for p in d["photos"]], next_cursor=d["next_cursor"],
            photo_count=int(d["photo_count"]), total_bytes=int(d["total_bytes"]),
        )  # fmt: skip
