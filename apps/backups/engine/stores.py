"""Where a backup repository's files live: a local directory or an S3 bucket/prefix, behind one interface.

The repository (engine/repository.py) names its files by relative POSIX paths (`config.json`,
`data/ab/ab…`, `snapshots/<id>.snap`, docs/backup-format.md) and asks a store for five things:
read one (or its first bytes), write one **only if it does not exist** (appending never rewrites),
replace one (only the key files, on a master-key re-wrap, `config.json`, and the store's own lock
records), list a prefix with sizes,
and delete one (forget and prune, the separate deletion steps). Plus a lock: backups share the
repository, `prune` needs it alone.

- `LocalStore`: files written under `tmp/`, fsynced, then `link(2)`ed into place (fails if the
  name exists); `flock(2)` on `lock` (one host, and the kernel drops a dead holder's lock).
- `S3Store`: any S3-compatible store through boto3. A write is `PutObject` with `If-None-Match: *`
  (S3's conditional write; moto, MinIO and AWS honour it), so an existing object is never
  overwritten even by two writers racing. A PUT is all or nothing, so there is no `tmp/`. The lock
  is a lock object per holder under `locks/` (as restic does): a holder writes its own, then lists
  the others and backs off on a conflict (both back off when two race: safe, never both in);
  holders refresh theirs while they run and one not refreshed for LOCK_STALE_SECONDS is a crashed
  holder's and ignored.

This module is the only one that touches a repository's store. It does not go through
apps/photos/storage.py (the photo store's owner): the engine must open a repository without
Django (the disaster case), and the repository is a different bucket with its own credentials.
Every failure to reach S3 is `StoreUnavailable`, never a botocore exception.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

LOCK_REFRESH_SECONDS = 300
LOCK_STALE_SECONDS = 1800


class StoreError(Exception):
    """A store operation that cannot be done (missing file, busy repository)."""


class StoreMissing(StoreError):
    """The named file is not in the store."""


class StoreBusy(StoreError):
    """Another holder has the repository lock in a conflicting mode."""


class StoreUnavailable(StoreError):
    """The store did not answer (S3 down, refused credentials): retry later."""


class RepositoryStore(ABC):
    """The files of one repository, by relative name."""

    #: Human-readable location (a path or an s3:// URL) for messages and the catalog.
    location: str

    @abstractmethod
    def read(self, name: str) -> bytes: ...

    def read_head(self, name: str, size: int) -> bytes:
        """The first `size` bytes of `name` (a blob's header: which data key it is sealed under)."""
        return self.read(name)[:size]

    @abstractmethod
    def write_new(self, name: str, data: bytes) -> bool:
        """Write `name` unless it exists (never overwrite); True if this call wrote it."""

    @abstractmethod
    def replace(self, name: str, data: bytes) -> None:
        """Atomically replace `name` (only the key files, re-wrapped with the same keys, and config.json)."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def listing(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(name, size) of every file under `prefix` (a directory name ending in "/"), in name order."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove `name`; a missing one is not an error."""

    @abstractmethod
    def lock(self, *, exclusive: bool) -> contextlib.AbstractContextManager:
        """Held shared by backups, exclusively by prune; StoreBusy when it conflicts."""

    def prepare(self) -> None:
        """Make what a new repository needs (a directory); nothing for S3."""


class LocalStore(RepositoryStore):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.location = str(self.path)

    def prepare(self) -> None:
        for sub in ("data", "snapshots", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def _tmp_file(self, data: bytes) -> Path:
        (self.path / "tmp").mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path / "tmp" / f"{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def read(self, name: str) -> bytes:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            raise StoreMissing(name) from None

    def read_head(self, name: str, size: int) -> bytes:
        try:
            with open(self.path / name, "rb") as handle:
                return handle.read(size)
        except FileNotFoundError:
            raise StoreMissing(name) from None

    def write_new(self, name: str, data: bytes) -> bool:
        target = self.path / name
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._tmp_file(data)
        try:
            os.link(tmp, target)  # fails if another writer put the same name meanwhile: same content
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def replace(self, name: str, data: bytes) -> None:
        os.replace(self._tmp_file(data), self.path / name)

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def listing(self, prefix: str) -> Iterator[tuple[str, int]]:
        root = self.path / prefix
        if not root.is_dir():
            return
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            try:
                yield path.relative_to(self.path).as_posix(), path.stat().st_size
            except FileNotFoundError:
                continue  # deleted while we walked

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool):
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusy("the repository is busy (a backup or prune is running); retry later") from None
            yield
        finally:
            os.close(fd)


def s3_client(*, endpoint_url: str | None = None, region: str | None = None, access_key: str | None = None, secret_key: str | None = None, addressing_style: str = "path"):
    """A boto3 S3 client with short timeouts: a dead store fails a backup in seconds, not minutes."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url or None, region_name=region or None, aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        config=Config(signature_version="s3v4", s3={"addressing_style": addressing_style}, connect_timeout=3, read_timeout=30,
                      retries={"max_attempts": 3, "mode": "standard"}),
    )  # fmt: skip


class S3Store(RepositoryStore):
    def __init__(self, *, bucket: str, prefix: str = "", client):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.location = f"s3://{bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _call(self, fn, *, missing: str | None = None):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if missing is not None and (status == 404 or code in ("NoSuchKey", "404", "NotFound")):
                raise StoreMissing(missing) from None
            if status == 412 or code == "PreconditionFailed":
                raise
            raise StoreUnavailable(f"{self.location}: the store refused the request ({code or status})") from None
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{self.location}: the store is unreachable ({type(exc).__name__})") from None

    def read(self, name: str) -> bytes:
        return self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read(), missing=name)

    def read_head(self, name: str, size: int) -> bytes:
        get = lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(name), Range=f"bytes=0-{size - 1}")["Body"].read()  # noqa: E731
        return self._call(get, missing=name)

    def write_new(self, name: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data, IfNoneMatch="*"))
        except ClientError:  # 412 Precondition Failed: the name exists, and is never overwritten
            return False
        return True

    def replace(self, name: str, data: bytes) -> None:
        self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data))

    def exists(self, name: str) -> bool:
        try:
            self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(name)), missing=name)
        except StoreMissing:
            return False
        return True

    def listing(self, prefix: str) -> Iterator[tuple[str, int]]:
        def pages():
            paginator = self.client.get_paginator("list_objects_v2")
            return list(paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)))

        for page in self._call(pages):
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix) :], int(item["Size"])

    def delete(self, name: str) -> None:
        self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(name)))

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool):
        name = f"locks/{secrets.token_hex(16)}.json"
        record = lambda: json.dumps({"exclusive": exclusive, "host": platform.node(), "pid": os.getpid(), "time": time.time()}).encode()  # noqa: E731
        self.write_new(name, record())
        stop = threading.Event()
        try:
            now = time.time()
            for other, _ in self.listing("locks/"):
                if other == name:
                    continue
                try:
                    held = json.loads(self.read(other))
                except (StoreMissing, ValueError):
                    continue  # released meanwhile, or half visible
                if now - held.get("time", 0) > LOCK_STALE_SECONDS:
                    continue  # a crashed holder's: not refreshed for half an hour
                if exclusive or held.get("exclusive"):
                    raise StoreBusy("the repository is busy (a backup or prune is running); retry later")
            refresher = threading.Thread(target=self._refresh, args=(name, record, stop), daemon=True, name="backup-lock-refresh")
            refresher.start()
            yield
        finally:
            stop.set()
            with contextlib.suppress(StoreError):
                self.delete(name)

    def _refresh(self, name: str, record, stop: threading.Event) -> None:
        while not stop.wait(LOCK_REFRESH_SECONDS):
            with contextlib.suppress(StoreError):
                self.replace(name, record())


def store_open(location: str | Path | RepositoryStore, *, s3_options: dict | None = None) -> RepositoryStore:
    """A store for `location`: a path, or `s3://bucket/prefix` (with s3_client() options)."""
    if isinstance(location, RepositoryStore):
        return location
    text = str(location)
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise StoreError(f"no bucket in {text!r}")
        return S3Store(bucket=bucket, prefix=prefix, client=s3_client(**(s3_options or {})))
    return LocalStore(Path(text))
