"""Recovery (engine/recovery.py) into the live deployment and into another location, against both stores.

These tests load into the live database from another connection, so they commit for real
(transaction=True): a test transaction holding locks would deadlock PostgreSQL's load.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from apps.audit.models import AuditEvent
from apps.backups.engine import runs, services
from apps.backups.engine.models import AlertKind, BackupAlert, RunStatus
from apps.backups.engine.recovery import recovery_request
from apps.backups.engine.recovery_db import postgres_database_drop
from apps.backups.engine.recovery_rows import book_tables
from apps.pairing.models import Book, Device
from apps.photos import storage
from apps.photos.models import Photo
from apps.photos.tests.conftest import moto_s3, store  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


def _photos(book, device_id, count: int) -> None:
    for _ in range(count):
        body = os.urandom(20_000)
        photo = Photo.objects.create(
            book=book, transaction_id=uuid.uuid4().hex, uploaded_by=device_id, size_bytes=len(body), mime_type="image/jpeg",
            sha256=hashlib.sha256(body).hexdigest(), state=Photo.State.AVAILABLE,
        )  # fmt: skip
        storage.object_put(key=storage.photo_key(book_id=book.id, photo_id=photo.id), body=body)


@pytest.fixture
def books(store, family, neighbours, alice, carol):
    """Two books with devices and photo objects."""
    _photos(family, alice.device_id, 3)
    _photos(neighbours, carol.device_id, 2)
    return family, neighbours


def _rows(book_id=None) -> dict:
    """Every book table's rows (of one book, if named), as comparable tuples."""
    state = {}
    param = Book._meta.pk.get_db_prep_value(book_id, connection) if book_id else None
    with connection.cursor() as cursor:
        for rows in book_tables():
            where = rows.where.replace("{schema}", "").replace("%(book)s", "%s") if book_id else ""
            cursor.execute(f'SELECT * FROM "{rows.table}"' + (f" WHERE {where}" if where else ""), [param] * where.count("%s"))
            state[rows.table] = sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall())
    return state


def _objects(book_id=None) -> dict[str, bytes]:
    prefix = f"{storage.KEY_PREFIX}{book_id}/" if book_id else storage.KEY_PREFIX
    return {obj.key: storage.object_read(obj.key) for obj in storage.objects_list() if obj.key.startswith(prefix)}


def _wipe(book=None) -> None:
    for key in _objects(book.id if book else None):
        storage.object_delete(key)
    (Book.objects.filter(pk=book.pk) if book else Book.objects.all()).delete()


def _recover(params: dict):
    run = recovery_request(params=params, requested_by="test", enqueue=False)
    return runs.backup_run_execute(run_id=run.pk)


def test_a_full_system_recovery_brings_back_every_row_and_photo_byte(books, repository_dir):
    before_rows, before_objects = _rows(), _objects()
    assert sum(len(rows) for rows in before_rows.values()) >= 2 + 3 + 5 and len(before_objects) == 5
    services.backup_create(backup_type="full")
    _wipe()
    assert not Book.objects.exists() and _objects() == {}
    run = _recover({"type": "full_system"})
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert _rows() == before_rows
    assert _objects() == before_objects
    assert run.result["objects"] == 5 and run.result["rows"] > 0
    event = AuditEvent.objects.filter(event_type="backup.restored", target=f"backup_run:{run.pk}").get()
    assert event.outcome == "success" and event.details["recovery_type"] == "full_system" and event.details["objects"] == 5


def test_a_full_system_recovery_lays_the_configuration_bundle_out(books, repository_dir, settings, tmp_path):
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse battery staple\n")
    settings.BACKUP_SECRETS_PASSPHRASE_FILE = str(passphrase)
    services.backup_create(backup_type="full")
    _wipe()
    run = _recover({"type": "full_system", "config_to": str(tmp_path / "config")})
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result["config_files"] >= 4
    assert (tmp_path / "config" / "secret_key").read_text().strip() == settings.SECRET_KEY
    assert "correct horse" not in json.dumps(run.params) + json.dumps(run.result)


def test_a_recovery_over_live_data_without_overwrite_is_refused_and_changes_nothing(books, repository_dir):
    family, _ = books
    services.backup_create(backup_type="full")
    Device.objects.filter(book=family).update(name="renamed after the backup")
    before_rows, before_objects = _rows(), _objects()
    run = runs.backup_run_execute(run_id=runs.backup_run_request(kind="recovery", params={"type": "full_system"}, enqueue=False).pk)
    assert run.status == RunStatus.FAILED and run.result["refused"] == "RECOVERY_TARGET_NOT_EMPTY"
    assert _rows() == before_rows and _objects() == before_objects
    assert BackupAlert.objects.filter(kind=AlertKind.RECOVERY_FAILED, run_id=run.pk).exists()
    assert AuditEvent.objects.get(event_type="backup.restored", target=f"backup_run:{run.pk}").outcome == "failure"


def test_with_overwrite_a_database_recovery_rolls_live_rows_back_to_the_snapshot(books, repository_dir):
    family, _ = books
    services.backup_create(backup_type="database")
    before = _rows()
    Device.objects.filter(book=family).update(name="renamed after the backup")
    Book.objects.exclude(pk=family.pk).delete()
    run = _recover({"type": "database", "overwrite": True})
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert _rows() == before


def test_ids_handed_out_after_a_recovery_into_a_fresh_database_do_not_collide_with_restored_ones(books, repository_dir):
    get_user_model().objects.create_user(username="in-the-snapshot")
    services.backup_create(backup_type="database")
    _wipe()
    get_user_model().objects.all().delete()
    with connection.cursor() as cursor:  # a new deployment's id counters start again
        if connection.vendor == "postgresql":
            cursor.execute("SELECT setval(pg_get_serial_sequence('auth_user', 'id'), 1, false)")
        else:
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = 'auth_user'")
    run = _recover({"type": "database"})
    assert run.status == RunStatus.SUCCEEDED, run.error
    get_user_model().objects.create_user(username="after-the-recovery")
    assert set(get_user_model().objects.values_list("username", flat=True)) == {"in-the-snapshot", "after-the-recovery"}


def test_a_selective_recovery_of_one_book_leaves_the_other_books_alone(books, repository_dir):
    family, neighbours = books
    services.backup_create(backup_type="full")
    family_rows, family_objects = _rows(family.id), _objects(family.id)
    _wipe(family)
    Device.objects.filter(book=neighbours).update(name="changed after the backup")
    neighbours_rows, neighbours_objects = _rows(neighbours.id), _objects(neighbours.id)
    run = _recover({"type": "selective", "book_id": str(family.id)})
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert _rows(family.id) == family_rows and _objects(family.id) == family_objects
    assert _rows(neighbours.id) == neighbours_rows and _objects(neighbours.id) == neighbours_objects
    assert run.result["objects"] == 3


def test_a_selective_recovery_of_a_table_replaces_only_that_table(books, repository_dir):
    family, _ = books
    services.backup_create(backup_type="database")
    photos_before = _rows()["photos_photo"]
    Photo.objects.filter(book=family).update(mime_type="image/png")
    Device.objects.filter(book=family).update(name="kept")
    run = _recover({"type": "selective", "tables": ["photos_photo"], "overwrite": True})
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert _rows()["photos_photo"] == photos_before
    assert set(Device.objects.filter(book=family).values_list("name", flat=True)) == {"kept"}


def test_a_recovery_that_breaks_a_foreign_key_fails_whole_and_raises_recovery_failed(books, repository_dir):
    services.backup_create(backup_type="database")
    _wipe()
    run = _recover({"type": "selective", "tables": ["photos_photo"]})  # photos whose books are gone
    assert run.status == RunStatus.FAILED
    assert not Photo.objects.exists()
    assert BackupAlert.objects.filter(kind=AlertKind.RECOVERY_FAILED, run_id=run.pk).exists()


def test_a_recovery_into_another_location_leaves_the_live_deployment_alone(books, repository_dir, tmp_path):
    names, before_objects = sorted(Device.objects.values_list("name", flat=True)), _objects()
    services.backup_create(backup_type="full")
    Device.objects.update(name="live changes stay")
    live_rows = _rows()
    other = str(tmp_path / "other.sqlite3") if connection.vendor == "sqlite" else f"{connection.settings_dict['NAME'][:40]}_other_{uuid.uuid4().hex[:6]}"
    try:
        run = _recover({"type": "full_system", "target_database": other, "objects_to": str(tmp_path / "objects-copy")})
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert _rows() == live_rows
        copied = {p.relative_to(tmp_path / "objects-copy").as_posix(): p.read_bytes() for p in (tmp_path / "objects-copy").rglob("*.enc")}
        assert copied == before_objects
        assert _other_device_names(other) == names
    finally:
        if connection.vendor == "postgresql":
            postgres_database_drop(other, settings_dict=connection.settings_dict)


def _other_device_names(other: str) -> list[str]:
    if connection.vendor == "sqlite":
        with sqlite3.connect(other) as conn:
            return sorted(name for (name,) in conn.execute("SELECT name FROM pairing_device"))
    from apps.backups.engine.digests import postgres_connect

    with postgres_connect(connection.settings_dict, dbname=other) as conn:
        return sorted(name for (name,) in conn.execute("SELECT name FROM pairing_device"))
