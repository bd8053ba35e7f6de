"""Cleanup of expired uploads and orphans, the store going down, the admin, and the operator commands."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.audit.models import AuditEvent, EventType
from apps.photos import services, storage
from apps.photos.models import BookPhotoUsage, Photo
from apps.photos.tests.conftest import ciphertext, object_request, photo_create, upload_start
from apps.photos.tests.moto_server import MotoS3
from homepocket.periodic import periodic_specs_collect

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    """The services' clock, moved instead of sleeping."""

    class Clock:
        offset = timedelta()

        def advance(self, **delta) -> None:
            self.offset += timedelta(**delta)

    moved = Clock()
    monkeypatch.setattr(services, "now", lambda: timezone.now() + moved.offset)
    return moved


def uploaded_not_completed(client, persona, size=100) -> dict:
    started = upload_start(client, persona, ciphertext(size)).json()["data"]
    assert object_request("PUT", started["upload_url"], ciphertext(size), started["upload_headers"]).status_code == 200
    return started


def test_cleanup_removes_an_upload_never_completed_after_an_hour(client, store, family, alice, clock):
    stale = uploaded_not_completed(client, alice)
    kept = photo_create(client, alice, ciphertext(50))
    clock.advance(minutes=59)
    assert services.photos_cleanup().expired_uploads == []
    clock.advance(minutes=2)
    report = services.photos_cleanup()
    assert report.expired_uploads == [stale["s3_key"]]
    assert not Photo.objects.filter(pk=stale["photo_id"]).exists()
    assert storage.object_size(stale["s3_key"]) is None
    assert Photo.objects.filter(pk=kept, state=Photo.State.AVAILABLE).exists()
    assert storage.object_size(Photo.objects.get(pk=kept).s3_key) == 50


def test_cleanup_removes_an_object_whose_row_is_gone(client, store, family, alice, clock):
    orphan = uploaded_not_completed(client, alice)
    Photo.objects.filter(pk=orphan["photo_id"]).delete()  # e.g. the book was deleted
    kept = photo_create(client, alice, ciphertext(50))
    assert services.photos_cleanup().orphan_objects == []  # too young: its row may be committing
    clock.advance(minutes=6)
    assert services.photos_cleanup().orphan_objects == [orphan["s3_key"]]
    assert storage.object_size(orphan["s3_key"]) is None
    assert storage.object_size(Photo.objects.get(pk=kept).s3_key) == 50


def test_a_dry_run_shows_what_it_would_remove_and_removes_nothing(client, store, family, alice, clock):
    stale = uploaded_not_completed(client, alice)
    orphan = uploaded_not_completed(client, alice)
    Photo.objects.filter(pk=orphan["photo_id"]).delete()
    clock.advance(hours=2)
    out = StringIO()
    call_command("photos", "cleanup", "--dry-run", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert f"would remove expired upload {stale['s3_key']}" in text
    assert f"would remove orphan object {orphan['s3_key']}" in text
    assert Photo.objects.filter(pk=stale["photo_id"]).exists()
    assert storage.object_size(stale["s3_key"]) == 100 and storage.object_size(orphan["s3_key"]) == 100
    call_command("photos", "cleanup", stdout=out, stderr=StringIO())
    assert storage.object_size(stale["s3_key"]) is None and storage.object_size(orphan["s3_key"]) is None


def test_cleanup_run_twice_finds_nothing_the_second_time(client, store, family, alice, clock):
    uploaded_not_completed(client, alice)
    clock.advance(hours=2)
    assert len(services.photos_cleanup().expired_uploads) == 1
    again = services.photos_cleanup()
    assert (again.expired_uploads, again.orphan_objects) == ([], [])


def test_the_cleanup_is_a_declared_periodic_task():
    spec = next(s for s in periodic_specs_collect() if s.name == "photos-cleanup")
    assert spec.task == "photos.cleanup" and spec.every_seconds <= 3600


# --- the store going down ----------------------------------------------------------------------


@pytest.fixture
def own_moto(settings):
    """A moto server this test may stop; never the run's shared one."""
    server = MotoS3().start()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    yield server
    server.stop()


def test_with_the_store_down_complete_and_delete_answer_s3_error_and_change_nothing(client, own_moto, family, alice):
    pending = uploaded_not_completed(client, alice)
    available = photo_create(client, alice, ciphertext(70))
    own_moto.stop()
    complete = client.post(f"/api/v1/photos/{pending['photo_id']}/complete", **alice.auth())
    assert complete.status_code == 503 and complete.json()["error"]["code"] == "S3_ERROR"
    assert int(complete.headers["Retry-After"]) > 0
    delete = client.delete(f"/api/v1/photos/{available}", **alice.auth())
    assert delete.status_code == 503 and delete.json()["error"]["code"] == "S3_ERROR"
    assert Photo.objects.get(pk=pending["photo_id"]).state == Photo.State.PENDING
    assert Photo.objects.get(pk=available).state == Photo.State.AVAILABLE
    usage = BookPhotoUsage.objects.get(book=family)
    assert (usage.photo_count, usage.total_bytes) == (1, 70)


def test_when_the_store_comes_back_the_same_requests_finish_cleanly(client, own_moto, family, alice):
    pending = uploaded_not_completed(client, alice)
    available = photo_create(client, alice, ciphertext(70))
    own_moto.stop()
    client.post(f"/api/v1/photos/{pending['photo_id']}/complete", **alice.auth())
    client.delete(f"/api/v1/photos/{available}", **alice.auth())
    own_moto.start()  # a fresh, empty moto on the same port: the objects were lost with it
    assert client.delete(f"/api/v1/photos/{available}", **alice.auth()).status_code == 200
    # The pending upload's object is gone: complete says so, and a re-upload then completes.
    assert client.post(f"/api/v1/photos/{pending['photo_id']}/complete", **alice.auth()).json()["error"]["code"] == "INVALID_STATE"
    body = ciphertext(100)
    object_request("PUT", pending["upload_url"], body, pending["upload_headers"])
    assert client.post(f"/api/v1/photos/{pending['photo_id']}/complete", **alice.auth()).status_code == 200
    usage = BookPhotoUsage.objects.get(book=family)
    assert (usage.photo_count, usage.total_bytes) == (1, 100)


def test_with_the_store_down_the_cleanup_fails_loudly_and_removes_no_row(client, own_moto, family, alice, clock):
    stale = uploaded_not_completed(client, alice)
    clock.advance(hours=2)
    own_moto.stop()
    with pytest.raises(storage.StorageUnavailable):
        services.photos_cleanup()
    assert Photo.objects.filter(pk=stale["photo_id"]).exists()


# --- operators -----------------------------------------------------------------------------------


def test_storage_init_creates_the_bucket_once(settings):
    server = MotoS3().start(create_bucket=False)
    try:
        for name, value in server.settings().items():
            setattr(settings, name, value)
        out = StringIO()
        call_command("storage", "init", stdout=out)
        call_command("storage", "init", stdout=out)
        assert f"bucket {server.bucket} created" in out.getvalue()
        assert f"bucket {server.bucket} exists" in out.getvalue()
        assert server.client().head_bucket(Bucket=server.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        server.stop()


def test_storage_init_makes_the_local_directory(local_store):
    out = StringIO()
    call_command("storage", "init", stdout=out)
    assert (local_store / "encrypted").is_dir() and "created" in out.getvalue()


def test_the_admin_lists_photos_by_book_with_size_and_state_and_no_link_to_the_bytes(admin_client, client, local_store, family, alice):
    photo_id = photo_create(client, alice, ciphertext(4321))
    page = admin_client.get("/admin/photos/photo/", {"q": str(family.id)}).content.decode()
    assert photo_id in page and "4321" in page and "available" in page
    detail = admin_client.get(f"/admin/photos/photo/{photo_id}/change/").content.decode()
    assert "/objects/" not in page + detail and "signature" not in page + detail
    usage = admin_client.get("/admin/photos/bookphotousage/").content.decode()
    assert str(family.id) in usage and "4321" in usage


def test_the_admin_delete_action_removes_object_and_row_and_is_audited_as_the_admins(
    admin_client, admin_user, client, local_store, family, alice, django_capture_on_commit_callbacks
):
    photo_id = photo_create(client, alice, ciphertext(10))
    key = Photo.objects.get(pk=photo_id).s3_key
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/photos/photo/", {"action": "delete_photos", "_selected_action": [photo_id]})
    assert not Photo.objects.filter(pk=photo_id).exists() and storage.object_size(key) is None
    event = AuditEvent.objects.get(event_type=EventType.PHOTO_DELETED)
    assert event.details == {"by": "admin", "admin_user_id": admin_user.pk}


def test_photo_rows_cannot_be_added_changed_or_deleted_by_hand(admin_client, client, local_store, family, alice):
    photo_id = photo_create(client, alice, ciphertext(10))
    assert admin_client.get("/admin/photos/photo/add/").status_code == 403
    assert admin_client.get(f"/admin/photos/photo/{photo_id}/delete/").status_code == 403
    admin_client.post(f"/admin/photos/photo/{photo_id}/change/", {"size_bytes": 1})
    assert Photo.objects.get(pk=photo_id).size_bytes == 10
