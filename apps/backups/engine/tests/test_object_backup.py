"""Photo objects in server backups, against both stores in every run (local directory and moto S3)."""

from __future__ import annotations

import os

import pytest

from apps.backups.engine import services
from apps.photos import storage
from apps.photos.tests.conftest import moto_s3, photo_create, store  # noqa: F401 (fixtures)


@pytest.fixture
def read_count(monkeypatch):
    """How many objects the backup read from the store."""
    reads = []
    real = storage.object_read
    monkeypatch.setattr(storage, "object_read", lambda key: reads.append(key) or real(key))
    return reads


def _photos(client, persona, count: int) -> dict[str, bytes]:
    bodies = {}
    for _ in range(count):
        body = os.urandom(50_000)
        photo_id = photo_create(client, persona, body)
        bodies[storage.photo_key(book_id=persona.book_id, photo_id=photo_id)] = body
    return bodies


def test_restored_photo_objects_have_the_same_bytes(client, store, family, alice, repository_dir, tmp_path):
    bodies = _photos(client, alice, 3)
    manifest = services.backup_create()
    assert manifest["object_store"] == store
    services.backup_restore(snapshot_id=manifest["id"], to=tmp_path / "out")
    for key, body in bodies.items():
        assert (tmp_path / "out" / "objects" / key).read_bytes() == body


def test_a_second_backup_reads_only_new_objects(client, store, family, alice, repository_dir, read_count):
    _photos(client, alice, 3)
    services.backup_create()
    assert len(read_count) == 3
    new = _photos(client, alice, 1)
    second = services.backup_create()
    assert read_count[3:] == list(new)
    assert second["stats"]["files_unchanged"] == 3
    assert services.backup_verify().ok


def test_database_only_leaves_the_objects_out(client, store, family, alice, repository_dir, read_count):
    _photos(client, alice, 1)
    manifest = services.backup_create(objects=False)
    assert read_count == []
    assert [f["name"].split("/")[0] for f in manifest["files"]] == ["database"]
