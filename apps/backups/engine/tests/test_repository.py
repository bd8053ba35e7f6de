"""The repository engine on its own: no Django, no database, a real directory and a real key file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.backups.engine.repository import Repository, RepositoryError
from apps.backups.engine.tests.conftest import backup_killed_mid_run
from signer.custody import CustodyError, LocalKeyFileCustody

MiB = 1024 * 1024


@pytest.fixture
def repo(tmp_path, custody):
    return Repository.init(tmp_path / "repo", custody=custody)


@pytest.fixture
def files(tmp_path):
    """A random (incompressible) file and a compressible one, as (name, path)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "random.bin").write_bytes(os.urandom(6 * MiB))
    (src / "text.txt").write_bytes(b"".join(b"row %08d: the family ledger entry marker-plaintext\n" % i for i in range(60_000)))
    (src / "empty").write_bytes(b"")
    return [("objects/random.bin", src / "random.bin"), ("database/text.txt", src / "text.txt"), ("empty", src / "empty")]


def _chunk_files(repo: Repository) -> list[Path]:
    return sorted(p for p in (repo.path / "data").rglob("*") if p.is_file())


def test_a_restored_snapshot_has_the_same_bytes(repo, files, tmp_path):
    manifest = repo.snapshot_create(files, meta={"kind": "test"})
    repo.restore(manifest["id"], to=tmp_path / "out")
    for name, path in files:
        assert (tmp_path / "out" / name).read_bytes() == path.read_bytes()


def test_a_snapshot_records_sizes_checksums_and_what_it_added(repo, files):
    manifest = repo.snapshot_create(files, meta={"kind": "test"})
    total = sum(path.stat().st_size for _, path in files)
    assert manifest["stats"]["bytes_in"] == total
    assert [f["size"] for f in manifest["files"]] == [path.stat().st_size for _, path in files]
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    # The text compresses: what was stored is well under what was read.
    assert manifest["stats"]["bytes_stored_new"] < total * 0.9
    assert repo.snapshot_get(manifest["id"]) == manifest


def test_a_second_snapshot_of_unchanged_data_adds_nothing(repo, files):
    first = repo.snapshot_create(files, meta={})
    second = repo.snapshot_create(files, meta={})
    assert first["stats"]["bytes_stored_new"] > 6 * MiB * 0.9
    assert second["stats"]["chunks_new"] == 0
    assert second["stats"]["bytes_stored_new"] == 0
    assert repo.snapshot_ids() == sorted([first["id"], second["id"]])


def test_changing_one_mib_of_a_large_file_adds_about_one_mib(repo, tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(os.urandom(32 * MiB))
    big.write_bytes(data)
    repo.snapshot_create([("big.bin", big)], meta={})
    data[16 * MiB : 17 * MiB] = os.urandom(MiB)
    big.write_bytes(data)
    added = repo.snapshot_create([("big.bin", big)], meta={})["stats"]["bytes_stored_new"]
    # Content-defined chunks: only those around the changed region are new (≤ 2 neighbours of max 4 MiB).
    assert MiB <= added <= 9 * MiB


def test_changing_one_mib_in_a_100_mib_object_store_adds_about_one_mib(repo, tmp_path):
    store = tmp_path / "objects"
    store.mkdir()
    for i in range(100):  # photo-sized ciphertext, as the photo store holds
        (store / f"photo-{i:03d}.enc").write_bytes(os.urandom(MiB))
    items = lambda: [(f"objects/{path.name}", path) for path in sorted(store.iterdir())]  # noqa: E731
    first = repo.snapshot_create(items(), meta={})["stats"]["bytes_stored_new"]
    unchanged = repo.snapshot_create(items(), meta={})["stats"]["bytes_stored_new"]
    (store / "photo-042.enc").write_bytes(os.urandom(MiB))
    changed = repo.snapshot_create(items(), meta={})["stats"]["bytes_stored_new"]

    assert first >= 100 * MiB
    assert unchanged == 0
    # The new object's chunks, each sealed (header, nonce, tag) and zstd-framed: about 1 MiB.
    assert MiB <= changed <= MiB + 4096


def test_chunks_are_encrypted_at_rest(repo, files):
    repo.snapshot_create(files, meta={})
    for chunk in _chunk_files(repo):
        assert b"marker-plaintext" not in chunk.read_bytes()
    for snap in (repo.path / "snapshots").iterdir():
        assert b"database/text.txt" not in snap.read_bytes()


def test_verify_passes_on_a_sound_repository(repo, files):
    repo.snapshot_create(files, meta={})
    report = repo.verify()
    assert report.ok
    assert report.snapshots_checked == 1
    assert report.chunks_checked == len(_chunk_files(repo))


def test_verify_reports_a_flipped_byte_with_its_snapshot_and_chunk(repo, files):
    manifest = repo.snapshot_create(files, meta={})
    victim = _chunk_files(repo)[0]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    victim.write_bytes(bytes(blob))
    report = repo.verify()
    assert not report.ok
    assert report.problems[0]["kind"] == "corrupt_chunk" and report.problems[0]["chunk"] == victim.name
    damaged = [p for p in report.problems if p["kind"] == "damaged_chunk"]
    assert damaged and damaged[0]["snapshot"] == manifest["id"] and damaged[0]["chunk"] == victim.name


def test_verify_reports_a_missing_chunk(repo, files):
    manifest = repo.snapshot_create(files, meta={})
    victim = _chunk_files(repo)[-1]
    victim.unlink()
    problems = repo.verify().problems
    assert problems == [p for p in problems if p["kind"] == "missing_chunk"]
    assert problems[0]["chunk"] == victim.name and problems[0]["snapshot"] == manifest["id"]


def test_restore_refuses_a_tampered_chunk(repo, files, tmp_path):
    manifest = repo.snapshot_create(files, meta={})
    victim = _chunk_files(repo)[0]
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 0xFF
    victim.write_bytes(bytes(blob))
    with pytest.raises(RepositoryError, match="authentication failed"):
        repo.restore(manifest["id"], to=tmp_path / "out")


def test_a_chunk_swapped_for_another_is_detected(repo, files):
    repo.snapshot_create(files, meta={})
    a, b = _chunk_files(repo)[:2]
    a.write_bytes(b.read_bytes())  # a valid sealed chunk, under the wrong id
    assert [p["chunk"] for p in repo.verify().problems if p["kind"] == "corrupt_chunk"] == [a.name]


def test_restore_refuses_a_non_empty_target_without_overwrite(repo, files, tmp_path):
    manifest = repo.snapshot_create(files, meta={})
    target = tmp_path / "out"
    target.mkdir()
    (target / "live.txt").write_text("live data")
    with pytest.raises(RepositoryError, match="--overwrite"):
        repo.restore(manifest["id"], to=target)
    assert sorted(p.name for p in target.iterdir()) == ["live.txt"]
    repo.restore(manifest["id"], to=target, overwrite=True)
    assert (target / "objects" / "random.bin").read_bytes() == files[0][1].read_bytes()


def test_a_snapshot_name_cannot_escape_the_restore_target(repo, files):
    with pytest.raises(RepositoryError, match="unsafe"):
        repo.snapshot_create([("../escape", files[0][1])], meta={})


def test_the_repository_opens_with_only_its_directory_and_the_master_key(repo, files, tmp_path):
    manifest = repo.snapshot_create(files, meta={})
    reopened = Repository.open(repo.path, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    assert reopened.snapshot_ids() == [manifest["id"]]
    reopened.restore(manifest["id"], to=tmp_path / "out")
    assert (tmp_path / "out" / "database" / "text.txt").read_bytes() == files[1][1].read_bytes()


def test_a_repository_does_not_open_under_another_master_key(repo, tmp_path):
    with pytest.raises(CustodyError):
        Repository.open(repo.path, custody=LocalKeyFileCustody(tmp_path / "other-master-key.json"))


def test_rewrapped_keys_open_after_the_old_master_key_is_retired(repo, files, custody, tmp_path):
    manifest = repo.snapshot_create(files, meta={})
    old = repo.master_key_id
    new = custody.rotate()
    assert repo.keys_rewrap(custody=custody) == new
    assert custody.retire(keep={new}) == [old]
    reopened = Repository.open(repo.path, custody=LocalKeyFileCustody(tmp_path / "master-key.json"))
    assert reopened.master_key_id == new
    reopened.restore(manifest["id"], to=tmp_path / "out")


def test_a_backup_killed_mid_run_leaves_a_valid_repository_without_its_snapshot(repo, files, tmp_path):
    first = repo.snapshot_create(files[1:], meta={})
    key = tmp_path / "master-key.json"
    backup_killed_mid_run(open_repository=f"Repository.open(Path({str(repo.path)!r}), custody=LocalKeyFileCustody(Path({str(key)!r})))", source=files[0][1])
    assert repo.snapshot_ids() == [first["id"]]
    report = repo.verify()
    assert report.ok
    assert report.chunks_checked > len({c for f in first["files"] for c in f["chunks"]})  # the killed run's chunk is there, unreferenced


def test_a_directory_item_stores_each_file_under_its_name_and_restores_the_tree(repo, tmp_path):
    dump = tmp_path / "dump"
    (dump / "sub").mkdir(parents=True)
    (dump / "toc.dat").write_bytes(b"table of contents")
    (dump / "3001.dat").write_bytes(os.urandom(300_000))
    (dump / "sub" / "empty.dat").write_bytes(b"")
    manifest = repo.snapshot_create([("database/postgres.dir", dump)], meta={})
    assert [f["name"] for f in manifest["files"]] == ["database/postgres.dir/3001.dat", "database/postgres.dir/sub/empty.dat", "database/postgres.dir/toc.dat"]
    repo.restore(manifest["id"], to=tmp_path / "out")
    for path in (dump / "toc.dat", dump / "3001.dat", dump / "sub" / "empty.dat"):
        assert (tmp_path / "out" / "database" / "postgres.dir" / path.relative_to(dump)).read_bytes() == path.read_bytes()
