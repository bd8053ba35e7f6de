"""manage.py migrate_to_postgres: an embedded deployment's data into PostgreSQL, resumable, verified, rolled back on failure.

With --objects, its photo objects into S3 first: moto's server, the distributed run's when there is
one (tests/harness/distributed.py), else one this module starts, so both runs test it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest

from apps.photos.tests.moto_server import ACCESS, MotoS3
from tests.harness.live import REPO
from tests.harness.ports import free_port

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"

POPULATE = """
import uuid
from apps.audit.services import audit_event_record
from apps.pairing.services import book_create
from apps.pairing.models import Device
from apps.quotas.services import api_key_create
for n in range(3):
    book, device, _ = book_create(device_id=uuid.uuid4(), public_key=bytes([n]) * 32, device_name=f"phone {n}")
    Device.objects.create(id=uuid.uuid4(), book=book, public_key=bytes([n + 100]) * 32, name="second phone")
for n in range(150):
    audit_event_record(event_type="pairing.failed", outcome="failure", details={"reason": "invalid", "n": n})
api_key_create(name="ops", scopes=["audit:read"], rpm=60)
"""


@pytest.fixture
def embedded(tmp_path):
    """A populated embedded deployment: its own var/ with a migrated SQLite database."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL", "RATELIMIT_REDIS_URL")}
    env.update({"HOMEPOCKET_VAR_DIR": str(tmp_path / "var"), "AUDIT_FLUSH_INTERVAL": "0", "LOG_LEVEL": "WARNING"})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=REPO, env=env, check=True)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", POPULATE], cwd=REPO, env=env, check=True)
    return env


@pytest.fixture
def target():
    name = f"hp_copy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy(env, target_url, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "migrate_to_postgres", "--target", target_url, *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def query(url: str, sql: str):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def tables(url: str) -> set[str]:
    return {row[0] for row in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def audit_rows(env) -> int:
    with sqlite3.connect(os.path.join(env["HOMEPOCKET_VAR_DIR"], "db.sqlite3")) as conn:
        return conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]


def sqlite_dump(env) -> str:
    with sqlite3.connect(os.path.join(env["HOMEPOCKET_VAR_DIR"], "db.sqlite3")) as conn:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


def test_every_row_arrives_verified_and_new_ids_follow_the_copied_ones(embedded, target):
    result = copy(embedded, target)
    assert result.returncode == 0, result.stderr
    assert "rows copied and verified" in result.stdout
    assert audit_rows(embedded) > 150  # 150 written here, and those of the books and the key
    assert f"verified audit_auditevent: {audit_rows(embedded)} rows" in result.stdout
    assert query(target, "SELECT count(*) FROM pairing_device") == [(6,)]
    assert query(target, "SELECT count(*) FROM quotas_apikey") == [(1,)]
    assert sorted(bytes(r[0])[0] for r in query(target, "SELECT public_key FROM pairing_device")) == [0, 1, 2, 100, 101, 102]
    assert "homepocket_dbcopy_progress" not in tables(target)
    # Sequences moved past the copied ids: the next audit row does not collide.
    (last,), = query(target, "SELECT max(id) FROM audit_auditevent")
    (next_id,), = query(target, "SELECT nextval(pg_get_serial_sequence('audit_auditevent', 'id'))")
    assert next_id > last


def test_the_embedded_database_is_only_read(embedded, target):
    before = sqlite_dump(embedded)
    assert copy(embedded, target).returncode == 0
    assert sqlite_dump(embedded) == before


def test_an_interrupted_copy_resumes_where_it_stopped(embedded, target):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "migrate_to_postgres", "--target", target, "--batch-size", "10"],
        cwd=REPO, env=embedded, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("audit_auditevent: 50/"):
            process.send_signal(signal.SIGKILL)  # no chance to clean up: the worst interruption
            break
    process.wait(30)
    total = audit_rows(embedded)
    [(copied, done)] = query(target, "SELECT copied, done FROM homepocket_dbcopy_progress WHERE table_name = 'audit_auditevent'")
    assert 50 <= copied < total and copied % 10 == 0 and not done  # whole batches only
    assert query(target, "SELECT count(*) FROM audit_auditevent") == [(copied,)]

    refused = copy(embedded, target)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    resumed = copy(embedded, target, "--resume", "--batch-size", "10")
    assert resumed.returncode == 0, resumed.stderr
    assert f"audit_auditevent: resuming after {copied}/{total} rows" in resumed.stdout
    assert f"verified audit_auditevent: {total} rows" in resumed.stdout


def test_a_failed_copy_leaves_the_target_as_it_found_it(embedded, target):
    # SQLite does not enforce a column's length; PostgreSQL does: a real mid-copy failure.
    with sqlite3.connect(os.path.join(embedded["HOMEPOCKET_VAR_DIR"], "db.sqlite3")) as conn:
        conn.execute("UPDATE pairing_device SET name = ? WHERE name = 'second phone'", ["x" * 500])
    result = copy(embedded, target)
    assert result.returncode != 0
    assert "rolled back" in result.stderr
    assert tables(target) == set()


def test_a_target_that_is_not_empty_is_refused_untouched(embedded, target):
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("CREATE TABLE somebody_elses (id int)")
    result = copy(embedded, target)
    assert result.returncode != 0 and "not empty" in result.stderr
    assert tables(target) == {"somebody_elses"}


# --- --objects: the local photo objects into S3 -------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    if os.environ.get("S3_ENDPOINT_URL"):
        yield os.environ["S3_ENDPOINT_URL"]
        return
    server = MotoS3().start(create_bucket=False)
    yield server.endpoint
    server.stop()


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "S3_BUCKET": bucket, "S3_ENDPOINT_URL": endpoint, "S3_ACCESS_KEY_ID": "testing",
        "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1",
    }  # fmt: skip


class Bucket:
    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.name = f"migrate-{uuid.uuid4().hex[:12]}"
        self.client = boto3.client("s3", endpoint_url=endpoint, **ACCESS)
        self.client.create_bucket(Bucket=self.name)

    def contents(self) -> dict[str, bytes]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        return {key: self.client.get_object(Bucket=self.name, Key=key)["Body"].read() for key in keys}

    def versions(self) -> dict[str, int]:
        listed = self.client.list_object_versions(Bucket=self.name).get("Versions", [])
        counts: dict[str, int] = {}
        for version in listed:
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
        return counts


@pytest.fixture
def bucket(s3_endpoint):
    return Bucket(s3_endpoint)


@pytest.fixture
def photos(embedded) -> dict[str, bytes]:
    """23 objects in the embedded store (keys as the photos app makes them), and one unfinished upload."""
    root = Path(embedded["HOMEPOCKET_VAR_DIR"]) / "objects"
    files = {}
    for n in range(23):
        key = f"encrypted/{uuid.uuid4()}/{uuid.uuid4()}.enc"
        files[key] = os.urandom(1 + n * 997 + (300_000 if n == 7 else 0))
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(files[key])
    (root / f"{next(iter(files))}.0a1b2c3d4e5f.part").write_bytes(b"half an upload")
    return files


def local_tree(embedded) -> dict[str, str]:
    root = Path(embedded["HOMEPOCKET_VAR_DIR"]) / "objects"
    files = [path for path in root.rglob("*") if path.is_file()]
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def test_objects_arrive_in_s3_byte_identical_under_the_same_keys_before_the_rows(embedded, photos, target, bucket):
    before = local_tree(embedded)
    result = copy({**embedded, **s3_env(bucket.endpoint, bucket.name)}, target, "--objects", "--object-batch-size", "4")
    assert result.returncode == 0, result.stderr
    assert bucket.contents() == photos  # the unfinished upload (.part) is not an object
    assert "objects: 4/23 verified" in result.stdout and "objects: 23/23 verified" in result.stdout
    assert "objects done: 23 in S3 and verified (23 uploaded, 0 already there)" in result.stdout
    assert result.stdout.index("objects done") < result.stdout.index("rows copied and verified")
    assert local_tree(embedded) == before  # copied, not moved: the operator deletes them after checking


def test_a_failed_object_copy_resumes_without_uploading_verified_objects_again(embedded, photos, target, bucket):
    # Versioning keeps every PUT as a version: one version per key means nothing went up twice.
    bucket.client.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    env = {**embedded, **s3_env(bucket.endpoint, bucket.name)}
    keys = sorted(photos)
    broken = Path(embedded["HOMEPOCKET_VAR_DIR"]) / "objects" / keys[12]
    broken.unlink()
    broken.symlink_to(broken.with_name("gone"))  # unreadable, even by root (chmod 000 is not)

    failed = copy(env, target, "--objects", "--object-batch-size", "5")
    assert failed.returncode != 0
    assert f"cannot read {broken.resolve().parent / broken.name}: No such file or directory" in failed.stderr
    assert "the target database was not touched" in failed.stderr
    assert tables(target) == set()
    # The two batches before, and the rest of the batch it failed in: verified, and only those.
    assert bucket.contents() == {key: photos[key] for key in keys[:15] if key != keys[12]}

    broken.unlink()
    broken.write_bytes(photos[keys[12]])
    resumed = copy(env, target, "--objects", "--object-batch-size", "5")
    assert resumed.returncode == 0, resumed.stderr
    assert "objects done: 23 in S3 and verified (9 uploaded, 14 already there)" in resumed.stdout
    assert bucket.contents() == photos
    assert bucket.versions() == {key: 1 for key in keys}
    assert "rows copied and verified" in resumed.stdout


def test_an_object_in_s3_with_other_bytes_under_its_key_is_replaced(embedded, photos, target, bucket):
    key = sorted(photos)[3]
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=bytes(len(photos[key])))  # same size, other bytes
    result = copy({**embedded, **s3_env(bucket.endpoint, bucket.name)}, target, "--objects")
    assert result.returncode == 0, result.stderr
    assert "(23 uploaded, 0 already there)" in result.stdout
    assert bucket.contents() == photos


def test_an_unreachable_s3_is_a_clear_error_and_changes_nothing(embedded, photos, target):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = copy({**embedded, **s3_env(endpoint, "photos")}, target, "--objects")
    assert result.returncode != 0
    assert f"object storage unreachable ({endpoint})" in result.stderr and "nothing was changed" in result.stderr
    assert tables(target) == set()


def test_objects_without_an_s3_store_are_refused_and_nothing_changes(embedded, photos, target):
    env = {key: value for key, value in embedded.items() if not key.startswith("S3_")}
    result = copy(env, target, "--objects")
    assert result.returncode != 0
    assert "set S3_BUCKET" in result.stderr and "nothing was changed" in result.stderr
    assert tables(target) == set()


def test_a_bucket_that_does_not_exist_is_refused_and_nothing_changes(embedded, photos, target, s3_endpoint):
    result = copy({**embedded, **s3_env(s3_endpoint, f"missing-{uuid.uuid4().hex[:12]}")}, target, "--objects")
    assert result.returncode != 0
    assert "does not exist" in result.stderr and "`manage.py storage init`" in result.stderr
    assert "nothing was changed" in result.stderr
    assert tables(target) == set()


def test_s3_going_down_mid_copy_is_a_clear_error_and_the_target_database_is_untouched(embedded, photos, target):
    moto = MotoS3().start()  # a store of this test's own, to stop (never the run's shared one)
    try:
        keys = sorted(photos)
        held = Path(embedded["HOMEPOCKET_VAR_DIR"]) / "objects" / keys[12]
        held.unlink()
        os.mkfifo(held)  # reading it waits for this test: the copy stops right there, in its third batch
        process = subprocess.Popen(
            [sys.executable, "manage.py", "migrate_to_postgres", "--target", target,
             "--objects", "--object-batch-size=5"],
            cwd=REPO, env={**embedded, **moto.env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        writer = fifo_open_for_writing(held, process)
        moto.stop()
        os.set_blocking(writer, True)
        with os.fdopen(writer, "wb") as held_file:
            held_file.write(photos[keys[12]])
        out, err = process.communicate(timeout=120)
    finally:
        moto.stop()
    assert process.returncode != 0
    # The held object failed; others of its batch may have too, the first of them is named.
    assert ": object storage unreachable or refusing" in err
    assert "the target database was not touched" in err
    assert tables(target) == set()


def fifo_open_for_writing(path: Path, process: subprocess.Popen) -> int:
    """Open the FIFO once the process opened it for reading (a non-blocking open fails until then)."""
    for _ in range(1200):
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
    raise AssertionError("the copy never read the held object")


def test_an_upload_s3_does_not_return_intact_is_deleted_and_stops_the_copy(settings, tmp_path, bucket, monkeypatch):
    from apps.photos import storage
    from apps.photos.objectcopy import ObjectCopy, ObjectCopyFailed

    settings.OBJECTS_DIR = tmp_path / "objects"
    settings.S3_BUCKET = bucket.name
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": bucket.name, "endpoint_url": bucket.endpoint, "region_name": "us-east-1",
        "access_key": "testing", "secret_key": "testing", "addressing_style": "path"}}}  # fmt: skip
    files = {f"encrypted/{uuid.uuid4()}/{uuid.uuid4()}.enc": os.urandom(5000) for _ in range(3)}
    for key, body in files.items():
        (tmp_path / "objects" / key).parent.mkdir(parents=True)
        (tmp_path / "objects" / key).write_bytes(body)
    altered = sorted(files)[1]
    # A store that keeps other bytes than it was sent (moto ignores x-amz-checksum-sha256):
    # only the read-back can see it.
    put = storage.s3_object_put
    monkeypatch.setattr(storage, "s3_object_put", lambda *, key, body, sha256: put(
        key=key, body=body[::-1] if key == altered else body, sha256=sha256))  # fmt: skip

    with pytest.raises(ObjectCopyFailed, match=f"{altered}: S3 returned 5000 bytes, sha256 .* expected 5000 bytes"):
        ObjectCopy(batch_size=10, progress=lambda line: None).copy_all()
    assert bucket.contents() == {key: body for key, body in files.items() if key != altered}
