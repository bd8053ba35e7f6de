"""Copy an embedded deployment's photo objects (the local directory) into S3: batched, resumable, verified.

`manage.py migrate_to_postgres --objects` (docs/deploy.md, docs/photos.md) drives this module,
before it copies any row, so a target database never refers to an object S3 does not hold:

1. Every `encrypted/<book_id>/<photo_id>.enc` under OBJECTS_DIR is copied to S3_BUCKET under the
   same key, in key order, in batches of a few objects uploaded in parallel, with a progress
   line per batch. The local files are only read: the operator deletes them after checking.
2. An object counts as copied only once it is *verified*: S3 answers the same size, and the bytes
   read back from S3 hash to the SHA-256 of the local file. Reading back is the check that holds
   on any S3-compatible store; the PUT also carries the SHA-256 (x-amz-checksum-sha256), so
   stores that check it refuse a corrupted body at the write already.
3. Resuming needs no state of its own: a key S3 already holds with the local size and a verified
   SHA-256 is not uploaded again (it costs a read-back instead); one with other bytes is replaced.
4. A failure (a local file that cannot be read, S3 unreachable or refusing, a read-back that does
   not match) stops the copy after the batch in flight: `ObjectCopyFailed` says which object and
   why. A PUT whose read-back did not match is deleted, so the objects this copy leaves in S3 are
   verified ones, plus at most those whose read-back the failure interrupted; a run that follows
   verifies them before anything relies on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from apps.photos import storage
from homepocket.dbcopy import progress_bar

# Uploads in flight at once: the work is waiting on the network, not the CPU; boto3's client is
# thread-safe and pools 10 connections.
WORKERS = 4


class ObjectCopyRefused(Exception):
    """The copy cannot start (no S3 configured, no bucket, S3 unreachable): nothing was changed."""


class ObjectCopyFailed(Exception):
    """An object could not be copied and verified; the copy stopped."""


@dataclass(frozen=True)
class ObjectReport:
    objects: int
    uploaded: int
    already_there: int
    bytes: int


@dataclass(frozen=True)
class _Outcome:
    key: str
    size: int = 0
    uploaded: bool = False
    error: str | None = None


def _read_back(key: str) -> tuple[int, str]:
    """Size and SHA-256 of the bytes S3 returns for `key` (a GET: photos are at most PHOTO_MAX_BYTES)."""
    body = storage.object_read(key)
    return len(body), hashlib.sha256(body).hexdigest()


def _object_copy(key: str) -> _Outcome:
    """Copy one object unless S3 already holds it verified; then verify what S3 holds."""
    try:
        body = storage.local_object_read(key)
    except OSError as exc:
        return _Outcome(key, error=f"cannot read {storage.local_object_path(key)}: {exc.strerror or exc}")
    digest = hashlib.sha256(body)
    local = (len(body), digest.hexdigest())
    try:
        # A HEAD first: a missing key or another size needs no read-back to know it must be written.
        if storage.object_size(key) == len(body) and _read_back(key) == local:
            return _Outcome(key, size=len(body))
        storage.s3_object_put(key=key, body=body, sha256=digest.digest())
        stored = _read_back(key)
        if stored != local:
            storage.object_delete(key)  # never leave bytes that are not the local file's under the key
            return _Outcome(
                key, error=f"{key}: S3 returned {stored[0]} bytes, sha256 {stored[1][:16]} after the upload, "
                f"expected {local[0]} bytes, sha256 {local[1][:16]}",
            )  # fmt: skip
    except storage.StorageUnavailable as exc:
        return _Outcome(key, error=f"{key}: object storage unreachable or refusing: {exc.message}")
    return _Outcome(key, size=len(body), uploaded=True)


class ObjectCopy:
    def __init__(self, *, batch_size: int, progress: Callable[[str], None]):
        self.batch_size = batch_size
        self.progress = progress

    def check_target(self) -> None:
        """ObjectCopyRefused unless S3 is configured, reachable, and its bucket exists."""
        if not storage.s3_enabled():
            raise ObjectCopyRefused(
                "--objects copies into the S3 store the distributed mode will use: set S3_BUCKET (and "
                "S3_ENDPOINT_URL, S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY as needed) for this command"
            )
        try:
            exists = storage.s3_bucket_exists()
        except storage.StorageUnavailable as exc:
            endpoint = settings.STORAGES["default"]["OPTIONS"].get("endpoint_url") or "AWS S3"
            raise ObjectCopyRefused(f"object storage unreachable ({endpoint}): {exc.message}") from None
        if not exists:
            raise ObjectCopyRefused("the bucket in S3_BUCKET does not exist: create it with `manage.py storage init`")

    def copy_all(self) -> ObjectReport:
        keys = storage.local_object_keys()
        total = len(keys)
        if not total:
            self.progress("objects: none in the local directory")
            return ObjectReport(0, 0, 0, 0)
        done = uploaded = already = size = 0
        pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="objectcopy")
        try:
            for start in range(0, total, self.batch_size):
                outcomes = list(pool.map(_object_copy, keys[start : start + self.batch_size]))
                failed = [o for o in outcomes if o.error]
                for outcome in outcomes:
                    if outcome.error:
                        continue
                    done += 1
                    size += outcome.size
                    uploaded += outcome.uploaded
                    already += not outcome.uploaded
                self.progress(
                    f"objects: {done}/{total} verified {progress_bar(done, total)} "
                    f"({uploaded} uploaded, {already} already in S3, {_mib(size)})"
                )
                if failed:
                    more = f" (and {len(failed) - 1} more in this batch)" if len(failed) > 1 else ""
                    raise ObjectCopyFailed(f"{failed[0].error}{more}")
        finally:
            # Ctrl-C: objects not started are dropped; those in flight finish (verified or not at all).
            pool.shutdown(wait=True, cancel_futures=True)
        return ObjectReport(total, uploaded, already, size)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
