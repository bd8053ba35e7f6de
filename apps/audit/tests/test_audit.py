"""Audit events are recorded by the actions that cause them, hashed, and chained against edits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from apps.audit.hashing import id_hash
from apps.audit.models import AuditEvent, EventType, Outcome
from apps.audit.services import audit_chain_verify, audit_event_record


def row_text(event: AuditEvent) -> str:
    return json.dumps(
        {f.name: str(getattr(event, f.name)) for f in AuditEvent._meta.fields}, default=str
    )


def assert_no_raw_id(event: AuditEvent, *raw_ids) -> None:
    text = row_text(event)
    for raw in raw_ids:
        assert str(raw) not in text and raw.hex not in text


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`with committed():` runs the on-commit hooks (where audit rows are written) at its end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.mark.django_db
class TestRecordedByTheirActions:
    def test_creating_a_book_records_book_created(self, client, alice, committed):
        with committed():
            client.post(
            "/api/v1/books",
                {"device_id": str(alice.device_id), "public_key": alice.key.public_key_b64, "device_name": "a"},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {alice.registration_token()}",
            )
        event = AuditEvent.objects.get(event_type=EventType.BOOK_CREATED)
        assert event.outcome == Outcome.SUCCESS
        assert event.actor_device == id_hash("device", alice.device_id)
        assert event.book == id_hash("book", event_book(alice))
        assert_no_raw_id(event, alice.device_id)

    def test_pairing_records_device_paired_and_failures(self, client, family, alice, dave, committed):
        code = client.post(
            "/api/v1/pairing/generate", {"book_id": str(family.id)}, content_type="application/json", **alice.auth()
        ).json()["data"]["short_code"]
        wrong = "000000" if code != "000000" else "000001"
        with committed():
            for short_code in (wrong, code):
                client.post(
                    "/api/v1/pairing/verify",
                    {"short_code": short_code, "public_key": dave.key.public_key_b64, "device_name": "d"},
                    content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {dave.registration_token()}",
                    REMOTE_ADDR="10.77.0.1",
                )
        failed = AuditEvent.objects.get(event_type=EventType.PAIRING_FAILED)
        assert (failed.outcome, failed.details) == (Outcome.FAILURE, {"reason": "invalid"})
        paired = AuditEvent.objects.get(event_type=EventType.DEVICE_PAIRED)
        assert paired.actor_device == id_hash("device", dave.device_id)
        assert paired.book == id_hash("book", family.id)
        for event in (failed, paired):
            assert_no_raw_id(event, dave.device_id, family.id)

    def test_revoking_records_who_revoked_whom(self, client, family, alice, bob, committed):
        with committed():
            client.delete(f"/api/v1/books/{family.id}/devices/{bob.device_id}", **alice.auth())
        event = AuditEvent.objects.get(event_type=EventType.DEVICE_REVOKED)
        assert event.actor_device == id_hash("device", alice.device_id)
        assert event.target == f"device:{id_hash('device', bob.device_id)}"
        assert_no_raw_id(event, alice.device_id, bob.device_id, family.id)

    def test_an_admin_revocation_names_the_operator(self, admin_client, admin_user, family, bob, committed):
        with committed():
            admin_client.post("/admin/pairing/device/", {"action": "revoke_selected", "_selected_action": [str(bob.device_id)]})
        event = AuditEvent.objects.get(event_type=EventType.DEVICE_REVOKED)
        assert event.details == {"by": "admin", "admin_user_id": admin_user.pk}

    def test_a_refused_token_records_the_reason_not_the_token(self, client, family, alice, committed):
        token = alice.book_token(now=0, lifetime_seconds=60)
        with committed():
            client.get(f"/api/v1/books/{family.id}/devices", HTTP_AUTHORIZATION=f"Bearer {token}")
        event = AuditEvent.objects.get(event_type=EventType.TOKEN_REFUSED)
        assert event.details == {"reason": "expired"}
        assert token not in row_text(event)
        assert event.actor_device == id_hash("device", alice.device_id)


def event_book(persona):
    from apps.pairing.models import Device

    return Device.objects.get(pk=persona.device_id).book_id


@pytest.mark.django_db
class TestChain:
    def record(self, committed, n: int) -> None:
        with committed():
            for i in range(n):
                audit_event_record(event_type=EventType.PAIRING_FAILED, outcome=Outcome.FAILURE, details={"reason": f"r{i}"})

    def test_an_intact_chain_verifies(self, committed):
        self.record(committed, 5)
        assert audit_chain_verify() == (5, None)
        call_command("audit", "verify")

    def test_an_edited_row_breaks_the_chain(self, committed):
        self.record(committed, 5)
        third = AuditEvent.objects.order_by("id")[2]
        AuditEvent.objects.filter(pk=third.pk).update(details={"reason": "rewritten"})
        checked, broken = audit_chain_verify()
        assert (checked, broken.event_id) == (2, third.pk)
        with pytest.raises(CommandError, match=f"broken at event {third.pk}"):
            call_command("audit", "verify")

    def test_a_removed_row_breaks_the_chain(self, committed):
        self.record(committed, 5)
        rows = list(AuditEvent.objects.order_by("id"))
        rows[2].delete()
        assert audit_chain_verify()[1].event_id == rows[3].pk

    def test_nothing_is_recorded_for_work_that_was_rolled_back(self, committed):
        with pytest.raises(RuntimeError), committed(), transaction.atomic():
            audit_event_record(event_type=EventType.PAIRING_FAILED, outcome=Outcome.FAILURE)
            raise RuntimeError("the work failed")
        assert AuditEvent.objects.count() == 0


@pytest.mark.django_db
class TestRetention:
    def make_history(self, committed):
        # created_at is part of each row's hash, so history is made by recording at a moved clock.
        from unittest import mock

        from django.utils import timezone as tz

        now = tz.now()
        for days_ago in (120, 100, 30, 1):
            with mock.patch("apps.audit.services.timezone.now", return_value=now - timedelta(days=days_ago)):
                with committed():
                    audit_event_record(event_type=EventType.PAIRING_FAILED, outcome=Outcome.FAILURE, details={"age": days_ago})

    def test_the_dry_run_says_what_would_go_and_deletes_nothing(self, committed, capsys):
        self.make_history(committed)
        call_command("audit", "purge", "--dry-run")
        assert "2 events older than 90 days would be deleted" in capsys.readouterr().out
        assert AuditEvent.objects.count() == 4

    def test_retention_deletes_old_events_and_the_chain_still_verifies(self, committed):
        self.make_history(committed)
        call_command("audit", "purge")
        assert sorted(e.details["age"] for e in AuditEvent.objects.all()) == [1, 30]
        assert audit_chain_verify() == (2, None)

    def test_old_rows_removed_outside_retention_break_the_chain(self, committed):
        self.make_history(committed)
        AuditEvent.objects.order_by("id").first().delete()
        checked, broken = audit_chain_verify()
        assert checked == 0 and "retention anchor" in broken.reason

    def test_the_purge_task_is_scheduled_daily(self):
        from apps.audit.tasks import PERIODIC_TASKS

        assert [(t.task, t.every_seconds) for t in PERIODIC_TASKS] == [("audit.events_purge", 86400)]


@pytest.mark.django_db
class TestQueries:
    @pytest.fixture
    def history(self, committed, family, neighbours, alice, bob, carol):
        with committed():
            audit_event_record(event_type=EventType.DEVICE_PAIRED, outcome=Outcome.SUCCESS, actor_device_id=bob.device_id, book_id=family.id)
            audit_event_record(event_type=EventType.BOOK_CREATED, outcome=Outcome.SUCCESS, actor_device_id=carol.device_id, book_id=neighbours.id)
            audit_event_record(event_type=EventType.PAIRING_FAILED, outcome=Outcome.FAILURE, details={"reason": "invalid"})

    def test_staff_see_events_filtered_by_a_raw_book_id(self, admin_client, history, family):
        response = admin_client.get("/api/v1/audit/events", {"book": str(family.id)})
        assert response.status_code == 200
        results = response.json()["data"]["results"]
        assert [r["event_type"] for r in results] == ["device.paired"]
        assert results[0]["book"] == id_hash("book", family.id)

    def test_staff_filter_by_type_and_outcome(self, admin_client, history):
        data = admin_client.get("/api/v1/audit/events", {"outcome": "failure"}).json()["data"]
        assert [r["event_type"] for r in data["results"]] == ["pairing.failed"]

    def test_a_device_token_is_forbidden(self, client, history, alice):
        response = client.get("/api/v1/audit/events", **alice.auth())
        assert (response.status_code, response.json()["error"]["code"]) == (403, "FORBIDDEN")

    def test_no_credentials_is_invalid_token(self, client, history):
        response = client.get("/api/v1/audit/events")
        assert (response.status_code, response.json()["error"]["code"]) == (401, "INVALID_TOKEN")

    def test_a_family_exports_its_own_books_events_only(self, client, history, family, alice):
        data = client.get(f"/api/v1/books/{family.id}/audit", **alice.auth()).json()["data"]
        assert {r["book"] for r in data["results"]} == {id_hash("book", family.id)}

    def test_another_family_cannot_export_it(self, client, history, family, carol):
        response = client.get(f"/api/v1/books/{family.id}/audit", **carol.auth())
        assert response.status_code == 403
