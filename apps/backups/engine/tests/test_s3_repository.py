"""The repository on S3 (moto's server over HTTP): the same layout and append-only semantics as a directory."""

from __future__ import annotations

import json
import os
import time
from io import StringIO

import boto3
import pytest
from django.core.management import CommandError, call_command

from apps.backups.engine import services
from apps.backups.engine.repository import Repository, RepositoryBusy, RepositoryUnavailable
from apps.backups.engine.stores import S3Store, store_open
from apps.photos.tests.moto_server import MotoS3
from apps.backups.engine.tests.conftest import backup_killed_mid_run

MiB = 1024 * 1024


@pytest.fixture
def repo(s3_repository, custody):
    location, options = s3_repository
    return Repository.init(location, custody=custody, s3_options=options)


@pytest.fixture
def files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(3 * MiB))
    (src / "text.txt").write_bytes(b"".join(b"row %08d: ledger entry marker-plaintext\n" % i for i in range(30_000)))
    return [("objects/random.bin", src / "random.bin"), ("database/text.txt", src / "text.txt")]


def _objects(repo: Repository) -> dict[str, bytes]:
    """Every object under the repository's prefix, by its name in the repository."""
    store: S3Store = repo.store
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix).get("Contents", [])
    return {item["Key"][len(store.prefix) :]: store.client.get_object(Bucket=store.bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_a_snapshot_round_trips_through_s3_in_the_directory_layout(repo, files, tmp_path):
    manifest = repo.snapshot_create(files, meta={"kind": "test"})
    names = set(_objects(repo))
    assert {"config.json", "keys.json", f"snapshots/{manifest['id']}.snap"} <= names
    chunks = {n for n in names if n.startswith("data/")}
    assert chunks and all(n.split("/")[1] == n.split("/")[2][:2] for n in chunks)
    repo.restore(manifest["id"], to=tmp_path / "out")
    for name, path in files:
        assert (tmp_path / "out" / name).read_bytes() == path.read_bytes()


def test_chunks_and_manifests_on_s3_are_encrypted(repo, files):
    repo.snapshot_create(files, meta={})
    for name, body in _objects(repo).items():
        assert b"marker-plaintext" not in body, name
        assert b"database/text.txt" not in body or name == "config.json", name


def test_a_second_snapshot_on_s3_adds_nothing(repo, files):
    first = repo.snapshot_create(files, meta={})
    second = repo.snapshot_create(files, meta={})
    assert first["stats"]["bytes_stored_new"] > 3 * MiB * 0.9
    assert second["stats"]["chunks_new"] == 0 and second["stats"]["bytes_stored_new"] == 0


def test_an_existing_object_is_never_overwritten(repo, files):
    repo.snapshot_create(files, meta={})
    name = next(n for n in _objects(repo) if n.startswith("data/"))
    before = repo.store.read(name)
    assert repo.store.write_new(name, b"something else") is False
    assert repo.store.read(name) == before


def test_verify_on_s3_reports_a_flipped_byte_with_its_snapshot_and_chunk(repo, files):
    manifest = repo.snapshot_create(files, meta={})
    store: S3Store = repo.store
    name = sorted(n for n in _objects(repo) if n.startswith("data/"))[0]
    blob = bytearray(store.read(name))
    blob[len(blob) // 2] ^= 0x01
    store.client.put_object(Bucket=store.bucket, Key=store.prefix + name, Body=bytes(blob))  # the attacker's write
    report = repo.verify()
    chunk_id = name.rsplit("/", 1)[1]
    assert {"kind": "corrupt_chunk", "chunk": chunk_id} == {k: report.problems[0][k] for k in ("kind", "chunk")}
    assert any(p["kind"] == "damaged_chunk" and p["snapshot"] == manifest["id"] and p["chunk"] == chunk_id for p in report.problems)


def test_prune_is_refused_while_a_backup_holds_the_s3_lock(repo):
    with repo.store.lock(exclusive=False), pytest.raises(RepositoryBusy, match="busy"):
        repo.prune()
    assert repo.prune()["chunks"] == 0  # the backup's lock object is gone once it finished


def test_a_crashed_holders_lock_is_ignored_once_stale(repo):
    stale = {"exclusive": True, "host": "gone", "pid": 1, "time": time.time() - 3600}
    repo.store.write_new("locks/crashed.json", json.dumps(stale).encode())
    assert repo.prune()["chunks"] == 0
    repo.store.replace("locks/crashed.json", json.dumps({**stale, "time": time.time()}).encode())
    with pytest.raises(RepositoryBusy):
        repo.prune()


def test_a_backup_killed_mid_run_leaves_the_s3_repository_valid(repo, files, s3_repository, tmp_path):
    first = repo.snapshot_create(files[1:], meta={})
    location, options = s3_repository
    key = tmp_path / "master-key.json"
    backup_killed_mid_run(open_repository=f"Repository.open({location!r}, custody=LocalKeyFileCustody(Path({str(key)!r})), s3_options={options!r})", source=files[0][1])
    assert repo.snapshot_ids() == [first["id"]]
    report = repo.verify()
    assert report.ok and report.chunks_checked > len({c for f in first["files"] for c in f["chunks"]})
    # The killed run's lock object stays behind, shared: a new backup may run, prune waits for it to go stale.
    assert repo.snapshot_create(files[1:], meta={})["stats"]["chunks_new"] == 0


def test_the_command_lists_and_restores_an_s3_repository_without_the_database(repository_dir, repo, files, s3_repository, tmp_path):
    repo.snapshot_create(files, meta={"kind": "database"})
    location, _ = s3_repository
    out = StringIO()
    call_command("backup", "--repository", location, "list", stdout=out)
    assert "database" in out.getvalue()
    call_command("backup", "--repository", location, "restore", "latest", "--to", str(tmp_path / "out"), stdout=StringIO())
    assert (tmp_path / "out" / "database" / "text.txt").read_bytes() == files[1][1].read_bytes()


@pytest.mark.django_db(transaction=True)
def test_a_server_backup_goes_to_the_configured_s3_repository(s3_repository, repository_dir, settings, tmp_path):
    location, _ = s3_repository
    settings.BACKUP_REPOSITORY = location
    manifest = services.backup_create(objects=False)
    repo = services.backup_repository_open()
    assert repo.location.startswith(location) and repo.snapshot_ids() == [manifest["id"]]
    assert not repository_dir.exists()  # nothing went to the local directory
    assert services.backup_test_restore()["ok"]


@pytest.fixture
def down_s3(tmp_path):
    """A moto of this test's own that the test stops: the repository's store goes down."""
    server = MotoS3().start(create_bucket=False)
    boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="backups")
    yield server
    server.stop()


def test_an_unreachable_s3_store_is_a_clear_retry_later_error(repository_dir, down_s3, custody, files, settings, tmp_path):
    options = {"endpoint_url": down_s3.endpoint, "region": "us-east-1", "access_key": "testing", "secret_key": "testing"}
    repo = Repository.init("s3://backups/r", custody=custody, s3_options=options)
    repo.snapshot_create(files[1:], meta={})
    down_s3.stop()
    with pytest.raises(RepositoryUnavailable, match="unreachable"):
        repo.snapshot_create(files, meta={})
    with pytest.raises(RepositoryUnavailable):
        repo.snapshot_ids()
    settings.BACKUP_S3 = options
    with pytest.raises(CommandError, match="unreachable"):
        call_command("backup", "--repository", "s3://backups/r", "list", stdout=StringIO())


def test_store_open_reads_an_s3_url_and_a_path(tmp_path):
    store = store_open("s3://bucket/some/prefix/", s3_options={"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1"})
    assert (store.bucket, store.prefix, store.location) == ("bucket", "some/prefix/", "s3://bucket/some/prefix/")
    assert store_open(tmp_path).path == tmp_path
