"""Object storage for photos: the only module that touches S3 or the local objects directory (CONVENTIONS 10).

Two backends behind one set of functions, chosen per call by settings (S3_BUCKET set: S3 through
django-storages/boto3; otherwise the local directory OBJECTS_DIR of the embedded mode):

- S3: upload URLs are presigned PUTs that sign `Content-Length` and `Content-Type`, so real S3
  refuses any other size; download URLs are presigned GETs. Presigning is local computation, no
  round trip. HEAD, DELETE and LIST are the only calls that reach the store.
- Local: upload and download URLs point at this server's own object routes
  (apps/photos/object_urls.py), signed with an HMAC under OBJECT_URL_SECRET; those routes call
  `local_object_write` / `local_object_open` here, which stream in chunks and enforce the size.

Every failure to reach the store is `StorageUnavailable`, which the API renders as S3_ERROR 503
with Retry-After: callers never see a botocore exception.

`manage.py migrate_to_postgres --objects` (apps/photos/objectcopy.py) reads the local directory
while S3 is configured: `local_object_keys` / `local_object_read` read it whatever the mode, and
`s3_object_put` / `s3_bucket_exists` are its only writes and checks on the S3 side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlencode

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from homepocket.api.errors import ApplicationError

# Keys are `encrypted/<book_id>/<photo_id>.enc`: nothing else is ever written or served.
KEY_PREFIX = "encrypted/"
_KEY_RE = re.compile(r"^encrypted/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\.enc$")
# The prefix of this server's own object routes (embedded mode); homepocket/asgi.py mounts them.
OBJECT_URL_PREFIX = "/objects/"
CHUNK_BYTES = 64 * 1024
_PARTIAL_SUFFIX = ".part"
RETRY_AFTER_SECONDS = 5


class StorageUnavailable(ApplicationError):
    code = "S3_ERROR"
    default_message = "Object storage is unreachable; retry later."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, details={"retry_after": RETRY_AFTER_SECONDS})


@dataclass(frozen=True)
class UploadTarget:
    url: str
    method: str
    headers: dict[str, str]


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified_at: datetime


def now() -> float:
    """The clock of URL expiry (patched by tests)."""
    return time.time()


def photo_key(*, book_id, photo_id) -> str:
    return f"{KEY_PREFIX}{book_id}/{photo_id}.enc"


def key_valid(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def s3_enabled() -> bool:
    return bool(settings.S3_BUCKET)


def store_describe() -> dict:
    """Where photo objects live, for data-residency reports: {"kind": "s3"|"local", "region"} (local: None, the server's own disk)."""
    if s3_enabled():
        return {"kind": "s3", "region": settings.STORAGES["default"]["OPTIONS"].get("region_name") or "us-east-1"}
    return {"kind": "local", "region": None}


# --- the functions the services call -------------------------------------------------------


def upload_target(*, key: str, size_bytes: int, mime_type: str, expires_in: int, base_url: str) -> UploadTarget:
    """A URL the device PUTs exactly `size_bytes` of ciphertext to, valid `expires_in` seconds."""
    headers = {"Content-Length": str(size_bytes), "Content-Type": mime_type}
    if s3_enabled():
        url = _s3_call(
            lambda c: c.generate_presigned_url(
                "put_object",
                Params={"Bucket": settings.S3_BUCKET, "Key": key, "ContentLength": size_bytes, "ContentType": mime_type},
                ExpiresIn=expires_in,
            )
        )
        return UploadTarget(url=url, method="PUT", headers=headers)
    query = local_url_sign(method="PUT", key=key, size=size_bytes, expires=int(now()) + expires_in)
    return UploadTarget(url=f"{base_url}{OBJECT_URL_PREFIX}{key}?{query}", method="PUT", headers=headers)


def download_url(*, key: str, expires_in: int, base_url: str) -> str:
    """A URL that GETs the object, valid `expires_in` seconds."""
    if s3_enabled():
        return _s3_call(
            lambda c: c.generate_presigned_url(
                "get_object", Params={"Bucket": settings.S3_BUCKET, "Key": key}, ExpiresIn=expires_in
            )
        )
    query = local_url_sign(method="GET", key=key, size=0, expires=int(now()) + expires_in)
    return f"{base_url}{OBJECT_URL_PREFIX}{key}?{query}"


def object_size(key: str) -> int | None:
    """The stored object's size (a HEAD), None when there is none."""
    if s3_enabled():
        try:
            head = _s3_call(lambda c: c.head_object(Bucket=settings.S3_BUCKET, Key=key), missing_ok=True)
        except _Missing:
            return None
        return int(head["ContentLength"])
    try:
        return _local_path(key).stat().st_size
    except FileNotFoundError:
        return None


def object_delete(key: str) -> None:
    """Delete the object; deleting one that is not there is not an error."""
    if s3_enabled():
        _s3_call(lambda c: c.delete_object(Bucket=settings.S3_BUCKET, Key=key))
        return
    _local_path(key).unlink(missing_ok=True)


def objects_list() -> Iterator[StoredObject]:
    """Every photo object in the store, with its size and time (for the orphan sweep)."""
    if s3_enabled():
        yield from _s3_list()
        return
    root = _objects_root()
    photos_root = root / KEY_PREFIX
    if not photos_root.is_dir():
        return
    for path in photos_root.rglob("*.enc"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # deleted while we walked
        yield StoredObject(path.relative_to(root).as_posix(), stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))


def object_read(key: str) -> bytes:
    """The stored object's bytes (server backups read the store through this; photos are a few MiB)."""
    if s3_enabled():
        return _s3_call(lambda c: c.get_object(Bucket=settings.S3_BUCKET, Key=key)["Body"].read())
    return _local_path(key).read_bytes()


# --- the embedded directory whatever the mode, and S3 writes (migrate_to_postgres --objects) ---


def local_object_keys() -> list[str]:
    """Every photo object key in the local directory, sorted, whether or not S3 is configured.

    Only names are listed (no stat): an entry that cannot be read must fail its copy, not vanish
    from the list. Temporary `*.part` files of unfinished uploads are not objects.
    """
    root = _objects_root()
    keys = []
    for dirpath, dirnames, filenames in os.walk(root / KEY_PREFIX):
        dirnames.sort()
        for name in filenames:
            key = (Path(dirpath) / name).relative_to(root).as_posix()
            if key_valid(key):
                keys.append(key)
    return sorted(keys)


def local_object_read(key: str) -> bytes:
    """The local object's bytes whatever the mode; OSError when the file cannot be read."""
    return _local_path(key).read_bytes()


def local_object_path(key: str) -> Path:
    """Where the local object lives (for messages to the operator)."""
    return _local_path(key)


def s3_bucket_exists() -> bool:
    """Whether S3_BUCKET exists (StorageUnavailable when the store cannot be reached)."""
    try:
        _s3_call(lambda c: c.head_bucket(Bucket=settings.S3_BUCKET), missing_ok=True)
    except _Missing:
        return False
    return True


def s3_object_put(*, key: str, body: bytes, sha256: bytes) -> None:
    """Write one object to S3 with its SHA-256 sent along (x-amz-checksum-sha256).

    A store that supports additional checksums (AWS S3, MinIO) refuses the PUT when the bytes it
    received do not hash to `sha256`; callers still verify by reading the object back, because not
    every S3-compatible store checks (moto ignores the header).
    """
    _s3_call(
        lambda c: c.put_object(
            Bucket=settings.S3_BUCKET, Key=key, Body=body, ContentLength=len(body),
            ContentType="application/octet-stream", ChecksumSHA256=base64.b64encode(sha256).decode(),
        )
    )  # fmt: skip


def object_put(*, key: str, body: bytes) -> None:
    """Write (or replace) one object with these bytes: a recovery putting backed-up objects back.

    Local: written under a temporary name and renamed into place, so a reader sees the old object
    or the new one, never a part.
    """
    if s3_enabled():
        s3_object_put(key=key, body=body, sha256=hashlib.sha256(body).digest())
        return
    path = _local_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.urandom(6).hex()}{_PARTIAL_SUFFIX}")
    with open(partial, "xb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def partial_uploads_purge(*, older_than: float, dry_run: bool) -> list[str]:
    """Local mode: remove temporary files of uploads that died mid-stream (a crashed process)."""
    if s3_enabled():
        return []  # S3 has no partial objects: a PUT is all or nothing
    photos_root = _objects_root() / KEY_PREFIX
    removed = []
    if not photos_root.is_dir():
        return removed
    for path in photos_root.rglob(f"*{_PARTIAL_SUFFIX}"):
        try:
            if path.stat().st_mtime < older_than:
                if not dry_run:
                    path.unlink(missing_ok=True)
                removed.append(path.name)
        except FileNotFoundError:
            continue
    return removed


def store_init() -> str:
    """Create the bucket (S3) or the directory (local) if missing; what was done, for the operator."""
    if s3_enabled():
        bucket = settings.S3_BUCKET

        def create(c):
            try:
                c.head_bucket(Bucket=bucket)
                return f"bucket {bucket} exists"
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            region = settings.STORAGES["default"]["OPTIONS"].get("region_name") or "us-east-1"
            kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            c.create_bucket(Bucket=bucket, **kwargs)
            return f"bucket {bucket} created"

        return _s3_call(create)
    root = _objects_root()
    existed = root.is_dir()
    (root / KEY_PREFIX).mkdir(parents=True, exist_ok=True)
    return f"directory {root} {'exists' if existed else 'created'}"


# --- the embedded mode's signed URLs and streaming ------------------------------------------


def local_url_sign(*, method: str, key: str, size: int, expires: int) -> str:
    """The query string of a local object URL: what it allows, until when, and the HMAC over both."""
    signature = _local_signature(method, key, size, expires)
    return urlencode({"size": size, "expires": expires, "signature": signature})


def local_url_verify(*, method: str, key: str, size: int, expires: int, signature: str) -> bool:
    """True when the signature is ours for exactly this method, key, size and expiry, and not expired."""
    expected = _local_signature(method, key, size, expires)
    # compare_digest: a byte-by-byte early exit would let an attacker find the MAC by timing.
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return False
    return now() <= expires


class LocalObjectExists(Exception):
    pass


class LocalUploadRefused(Exception):
    def __init__(self, reason: str, received: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


class LocalObjectWriter:
    """Streams one upload to a temporary file next to the target; `commit` publishes it atomically.

    The object appears only when all `size` bytes arrived: a short or long body, or a dropped
    connection, leaves nothing under the key (the temporary file is removed).
    """

    def __init__(self, key: str, size: int) -> None:
        self.path = _local_path(key)
        if self.path.exists():
            raise LocalObjectExists(key)
        self.size = size
        self.received = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f"{self.path.name}.{os.urandom(6).hex()}{_PARTIAL_SUFFIX}")
        self._file = open(self.partial, "xb")

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise LocalUploadRefused("too_large", self.received)
        self._file.write(chunk)

    def commit(self) -> None:
        if self.received != self.size:
            raise LocalUploadRefused("too_short", self.received)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        try:
            # link() fails when the key exists: an upload URL can publish one object, never replace one.
            os.link(self.partial, self.path)
        except FileExistsError:
            raise LocalObjectExists(str(self.path)) from None
        finally:
            self.partial.unlink(missing_ok=True)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.partial.unlink(missing_ok=True)


def local_object_open(key: str):
    """An open binary file of the object and its size, or None; the caller streams and closes it."""
    try:
        handle = open(_local_path(key), "rb")
    except FileNotFoundError:
        return None
    return handle, os.fstat(handle.fileno()).st_size


# --- internals --------------------------------------------------------------------------------


def _objects_root() -> Path:
    return Path(settings.OBJECTS_DIR).resolve()


def _local_path(key: str) -> Path:
    if not key_valid(key):
        raise ValueError("not a photo object key")
    return _objects_root() / key


@lru_cache(maxsize=1)
def _secret_for(raw: str) -> bytes:
    return hashlib.sha256(b"homepocket-object-url:" + raw.encode()).digest()


def _local_signature(method: str, key: str, size: int, expires: int) -> str:
    message = f"{method}\n{key}\n{size}\n{expires}".encode()
    digest = hmac.new(_secret_for(settings.OBJECT_URL_SECRET), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class _Missing(Exception):
    pass


def _s3_call(call, *, missing_ok: bool = False):
    try:
        return call(_s3_client(_s3_config()))
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if missing_ok and status == 404:
            raise _Missing() from None
        raise StorageUnavailable(f"Object storage refused the request ({status}).") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable() from exc


def _s3_list() -> Iterator[StoredObject]:
    def pages(c):
        return list(c.get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET, Prefix=KEY_PREFIX))

    for page in _s3_call(pages):
        for item in page.get("Contents", []):
            yield StoredObject(item["Key"], int(item["Size"]), item["LastModified"])


def _s3_config() -> tuple:
    options = settings.STORAGES["default"]["OPTIONS"]
    return (
        options.get("endpoint_url"), options.get("region_name"), options.get("access_key"),
        options.get("secret_key"), options.get("addressing_style") or "path",
    )  # fmt: skip


@lru_cache(maxsize=4)
def _s3_client(config: tuple):
    # django-storages' S3Storage builds the boto3 client from the same options as default_storage;
    # its client is thread-safe and reused. Short timeouts and few retries: a dead store answers
    # S3_ERROR within seconds instead of holding the request for botocore's minute.
    from storages.backends.s3 import S3Storage

    endpoint_url, region_name, access_key, secret_key, addressing_style = config
    storage = S3Storage(
        bucket_name=settings.S3_BUCKET, endpoint_url=endpoint_url, region_name=region_name, access_key=access_key,
        secret_key=secret_key, addressing_style=addressing_style, signature_version="s3v4",
        client_config=Config(
            signature_version="s3v4", s3={"addressing_style": addressing_style}, connect_timeout=2, read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )  # fmt: skip
    return storage.connection.meta.client
