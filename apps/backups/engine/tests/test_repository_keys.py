"""Data keys per snapshot: each backup run seals under a fresh key named in every blob's header;
version-1/2 repositories (written here as docs/backup-format.md describes them) still read; the
master-key rotation re-wraps every key; prune destroys the keys nothing is sealed under any more."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import secrets

import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.backups.engine import services
from apps.backups.engine.repository import Repository, RepositoryError
from apps.backups.engine.tests.conftest import backup_killed_mid_run
from signer.custody import LocalKeyFileCustody

KiB = 1024


@pytest.fixture(params=["directory", "s3"])
def location(request, tmp_path):
    if request.param == "directory":
        return tmp_path / "repo", None
    return request.getfixturevalue("s3_repository")


def _source(tmp_path, name: str, size: int = 100 * KiB) -> tuple[str, object]:
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))
    return f"objects/{name}", path


def _blob(repo: Repository, chunk_id: str) -> bytes:
    return repo.store.read(f"data/{chunk_id[:2]}/{chunk_id}")


def _header_key(blob: bytes) -> str:
    assert blob[:4] == b"HPB3"
    return blob[4:20].hex()


def _chunks(manifest: dict) -> list[str]:
    return [c for entry in manifest["files"] for c in entry["chunks"]]


def _key_files(repo: Repository) -> set[str]:
    return {name[len("keys/") : -len(".key")] for name, _ in repo.store.listing("keys/")}


# -- one key per snapshot -------------------------------------------------------------------------


def test_each_snapshot_seals_its_chunks_and_manifest_under_a_key_of_its_own(location, custody, tmp_path):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options)
    first = repo.snapshot_create([_source(tmp_path, "a.bin")], meta={})
    second = repo.snapshot_create([_source(tmp_path, "b.bin")], meta={})
    assert first["data_key"] != second["data_key"]
    assert _key_files(repo) == {first["data_key"], second["data_key"]}
    for manifest in (first, second):
        assert {_header_key(_blob(repo, c)) for c in _chunks(manifest)} == {manifest["data_key"]}
        assert _header_key(repo.store.read(f"snapshots/{manifest['id']}.snap")) == manifest["data_key"]
    assert json.loads(repo.store.read("config.json"))["version"] == 3 == first["version"]


def test_a_chunk_shared_by_two_snapshots_keeps_the_key_of_the_first(custody, tmp_path):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    source = _source(tmp_path, "a.bin")
    first = repo.snapshot_create([source], meta={})
    second = repo.snapshot_create([source], meta={})
    assert second["stats"]["chunks_new"] == 0 and _chunks(second) == _chunks(first)  # dedup across keys: ids are under the id key
    assert {_header_key(_blob(repo, c)) for c in _chunks(second)} == {first["data_key"]}
    reopened = Repository.open(repo.path, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    reopened.restore(second["id"], to=tmp_path / "out")
    assert (tmp_path / "out" / source[0]).read_bytes() == source[1].read_bytes()


def test_a_chunk_whose_header_names_another_snapshots_key_does_not_open(custody, tmp_path):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    first = repo.snapshot_create([_source(tmp_path, "a.bin")], meta={})
    second = repo.snapshot_create([_source(tmp_path, "b.bin")], meta={})
    victim = _chunks(second)[0]
    blob = _blob(repo, victim)
    repo.store.replace(f"data/{victim[:2]}/{victim}", blob[:4] + bytes.fromhex(first["data_key"]) + blob[20:])
    problems = Repository.open(repo.path, custody=custody).verify().problems
    assert [(p["kind"], p["chunk"]) for p in problems if p["kind"] == "corrupt_chunk"] == [("corrupt_chunk", victim)]
    assert "authentication failed" in problems[0]["detail"]
    assert any(p["kind"] == "damaged_chunk" and p["snapshot"] == second["id"] for p in problems)


def test_a_chunk_naming_a_key_the_repository_lacks_is_reported(custody, tmp_path):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    manifest = repo.snapshot_create([_source(tmp_path, "a.bin")], meta={})
    victim = _chunks(manifest)[0]
    blob = _blob(repo, victim)
    unknown = secrets.token_hex(16)
    repo.store.replace(f"data/{victim[:2]}/{victim}", blob[:4] + bytes.fromhex(unknown) + blob[20:])
    with pytest.raises(RepositoryError, match=f"data key {unknown} missing"):
        repo.restore(manifest["id"], to=tmp_path / "out")
    assert repo.verify().problems[0]["kind"] == "corrupt_chunk"


def test_a_key_file_copied_under_another_key_id_does_not_unwrap(custody, tmp_path):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    first = repo.snapshot_create([_source(tmp_path, "a.bin")], meta={})
    second = repo.snapshot_create([_source(tmp_path, "b.bin")], meta={})
    repo.store.replace(f"keys/{second['data_key']}.key", repo.store.read(f"keys/{first['data_key']}.key"))
    reopened = Repository.open(repo.path, custody=custody)  # nothing cached: the key file is read again
    with pytest.raises(RepositoryError, match=f"data key {second['data_key']} does not unwrap"):
        reopened.snapshot_get(second["id"])
    assert reopened.snapshot_get(first["id"])["id"] == first["id"]


# -- versions 1 and 2 -----------------------------------------------------------------------------


def _legacy_repository(path, custody, *, version: int, files: dict[str, bytes]) -> str:
    """A version-1 (zstd) or version-2 (gzip) repository, written by hand as docs/backup-format.md
    describes those versions (one chunk per file); its one snapshot's id."""
    compression, codec_byte, pack = ("zstd", 1, zstandard.ZstdCompressor(level=3).compress) if version == 1 else ("gzip", 2, lambda d: gzip.compress(d, mtime=0))
    for sub in ("data", "snapshots", "tmp"):
        (path / sub).mkdir(parents=True)
    repository_id, keys = secrets.token_hex(16), secrets.token_bytes(64)
    wrapped, master = custody.wrap(keys, context=b"homepocket/backups/repository/v1/" + bytes.fromhex(repository_id))
    (path / "keys.json").write_text(json.dumps({"master_key_id": master, "wrapped_keys": wrapped.hex()}))

    def seal(body: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return b"HPB1" + nonce + AESGCM(keys[:32]).encrypt(nonce, body, aad)

    entries = []
    for name, data in files.items():
        chunk_id = hmac.new(keys[32:], data, hashlib.sha256).hexdigest()
        (path / "data" / chunk_id[:2]).mkdir(exist_ok=True)
        (path / "data" / chunk_id[:2] / chunk_id).write_bytes(seal(bytes([codec_byte]) + pack(data), b"chunk:" + bytes.fromhex(chunk_id)))
        entries.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunks": [chunk_id]})
    snapshot_id = "20250101T000000000000Z-0123abcd"
    manifest = {"version": version, "id": snapshot_id, "started_at": "2025-01-01T00:00:00+00:00", "finished_at": "2025-01-01T00:00:01+00:00",
                "duration_seconds": 1.0, "files": entries, "kind": "test",
                "stats": {"bytes_in": 0, "chunks": len(entries), "chunks_new": len(entries), "bytes_stored_new": 0, "files": len(entries), "files_unchanged": 0, "parent": None}}  # fmt: skip
    (path / "snapshots" / f"{snapshot_id}.snap").write_bytes(seal(b"\x00" + json.dumps(manifest).encode(), b"snapshot:" + snapshot_id.encode()))
    config = {"format": "homepocket-backup", "version": version, "repository_id": repository_id, "created_at": "2025-01-01T00:00:00+00:00",
              "chunker": {"algorithm": "fastcdc2020", "min_size": 262144, "avg_size": 1048576, "max_size": 4194304},
              "chunk_id": "hmac-sha256", "cipher": "aes-256-gcm", "compression": compression}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))
    return snapshot_id


@pytest.mark.parametrize("version", [1, 2])
def test_a_repository_of_an_earlier_version_restores_and_takes_new_snapshots_under_their_own_keys(version, custody, tmp_path):
    data = {"database/ledger.db": os.urandom(100 * KiB), "objects/a.enc": b"receipt " * 5000}
    old = _legacy_repository(tmp_path / "repo", custody, version=version, files=data)
    repo = Repository.open(tmp_path / "repo", custody=custody)
    repo.restore(old, to=tmp_path / "old")
    assert all((tmp_path / "old" / name).read_bytes() == content for name, content in data.items())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ledger.db").write_bytes(data["database/ledger.db"])
    new = repo.snapshot_create([("database/ledger.db", tmp_path / "src" / "ledger.db"), _source(tmp_path, "b.bin")], meta={})
    assert new["stats"]["chunks_new"] == 1  # the unchanged database deduplicates against the old chunk
    assert json.loads((tmp_path / "repo" / "config.json").read_text())["version"] == 3
    assert _blob(repo, new["files"][0]["chunks"][0])[:4] == b"HPB1"  # an old chunk is never rewritten
    assert _header_key(_blob(repo, new["files"][1]["chunks"][0])) == new["data_key"]
    reopened = Repository.open(tmp_path / "repo", custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    assert reopened.verify().ok
    reopened.restore(old, to=tmp_path / "old-again")
    assert (tmp_path / "old-again" / "objects" / "a.enc").read_bytes() == data["objects/a.enc"]


def test_a_later_version_is_refused(custody, tmp_path):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    config = json.loads(repo.store.read("config.json"))
    repo.store.replace("config.json", json.dumps({**config, "version": 4}).encode())
    with pytest.raises(RepositoryError, match="unsupported repository format homepocket-backup v4"):
        Repository.open(tmp_path / "repo", custody=custody)


# -- master-key rotation --------------------------------------------------------------------------


def test_the_master_key_rotation_rewraps_every_snapshot_key(repository_dir, custody, tmp_path):
    repo = Repository.init(repository_dir, custody=custody)
    manifests = [repo.snapshot_create([_source(tmp_path, f"{n}.bin")], meta={}) for n in range(3)]
    old = repo.master_key_id
    new = custody.rotate()
    assert services.backup_master_keys_rewrap(custody_=custody, new_master=new) == set()
    assert Repository.master_key_ids_of(repository_dir) == {new}
    assert {json.loads(repo.store.read(f"keys/{m['data_key']}.key"))["master_key_id"] for m in manifests} == {new}
    assert custody.retire(keep={new}) == [old]
    reopened = Repository.open(repository_dir, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    for manifest in manifests:
        reopened.restore(manifest["id"], to=tmp_path / f"out-{manifest['id']}")


def test_a_rotation_that_cannot_rewrap_a_snapshot_key_keeps_the_old_master_key(repository_dir, custody, tmp_path):
    repo = Repository.init(repository_dir, custody=custody)
    manifest, other = (repo.snapshot_create([_source(tmp_path, f"{n}.bin")], meta={}) for n in range(2))
    old = repo.master_key_id
    # One snapshot key wrapped under a master key this custodian does not hold (a damaged or foreign key file).
    stranger = LocalKeyFileCustody(tmp_path / "stranger.json")
    context = b"homepocket/backups/data-key/v1/" + bytes.fromhex(repo.config["repository_id"]) + bytes.fromhex(manifest["data_key"])
    wrapped, stranger_master = stranger.wrap(os.urandom(32), context=context)
    repo.store.replace(f"keys/{manifest['data_key']}.key", json.dumps({"master_key_id": stranger_master, "wrapped_key": wrapped.hex()}).encode())
    new = custody.rotate()
    assert services.backup_master_keys_rewrap(custody_=custody, new_master=new) == {stranger_master}
    # keys.json and the other snapshot's key were re-wrapped all the same.
    assert old not in Repository.master_key_ids_of(repository_dir)
    assert json.loads(repo.store.read(f"keys/{other['data_key']}.key"))["master_key_id"] == new


# -- prune and crashes ----------------------------------------------------------------------------


def test_prune_destroys_the_key_of_a_forgotten_snapshot_once_none_of_its_chunks_remain(location, custody, tmp_path):
    where, options = location
    repo = Repository.init(where, custody=custody, s3_options=options)
    shared, gone = _source(tmp_path, "shared.bin"), _source(tmp_path, "gone.bin")
    first = repo.snapshot_create([shared], meta={})  # its key seals the shared chunk, which the third snapshot keeps
    second = repo.snapshot_create([gone], meta={})  # its key seals only chunks that go
    third = repo.snapshot_create([shared, _source(tmp_path, "new.bin")], meta={})
    repo.forget([first["id"], second["id"]])
    assert repo.prune(dry_run=True) == {"chunks": 1, "bytes": len(_blob(repo, _chunks(second)[0])), "keys": 1, "dry_run": True}
    assert _key_files(repo) == {first["data_key"], second["data_key"], third["data_key"]}
    assert repo.prune()["keys"] == 1
    assert _key_files(repo) == {first["data_key"], third["data_key"]}
    reopened = Repository.open(where, custody=custody, s3_options=options)
    assert reopened.verify().ok
    reopened.restore(third["id"], to=tmp_path / "out")
    assert (tmp_path / "out" / shared[0]).read_bytes() == shared[1].read_bytes()
    reopened.forget([third["id"]])
    assert reopened.prune()["keys"] == 2 and _key_files(reopened) == set()


def test_a_backup_killed_mid_run_leaves_its_key_which_prune_removes_with_its_chunks(custody, tmp_path):
    repo = Repository.init(tmp_path / "repo", custody=custody)
    first = repo.snapshot_create([_source(tmp_path, "a.bin")], meta={})
    key = tmp_path / "master-key.json"
    big = _source(tmp_path, "big.bin", size=2 * 1024 * KiB)[1]
    backup_killed_mid_run(open_repository=f"Repository.open(Path({str(repo.path)!r}), custody=LocalKeyFileCustody(Path({str(key)!r})))", source=big)
    assert repo.snapshot_ids() == [first["id"]] and len(_key_files(repo)) == 2
    assert repo.verify().ok  # the killed run's chunks open under its key
    result = repo.prune()
    assert result["chunks"] >= 1 and result["keys"] == 1
    assert _key_files(repo) == {first["data_key"]} and repo.verify().ok
