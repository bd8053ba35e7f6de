"""Share delivery for operators and periodic work: deadline expiry, nonce purge, `manage.py share_delivery`."""

from __future__ import annotations

import os
import uuid

import pytest
from coincurve import PrivateKey
from django.core.management import CommandError, call_command

from apps.audit.models import AuditEvent, EventType
from apps.backups.delivery import services
from apps.backups.delivery.models import DeliveryStatus, ShareDelivery, ShareDeliveryRequest
from apps.backups.tasks import PERIODIC_TASKS, share_deliveries_expire_task, share_delivery_requests_purge_task
from apps.backups.tests.delivery_calls import REQUEST, deposit, post, request_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery(client, family, alice, bob) -> ShareDelivery:
    return ShareDelivery.objects.get(pk=deposit(client, alice, bob, os.urandom(64)).json()["data"]["delivery_id"])


def failed(delivery) -> ShareDelivery:
    ShareDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED, last_error="deadline")
    delivery.refresh_from_db()
    return delivery


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("share_delivery", *args, stdout=out)
    return out.getvalue()


class TestDeadline:
    def test_a_delivery_not_confirmed_by_its_deadline_fails(self, delivery, clock, settings):
        clock.advance(settings.SHARE_DELIVERY_DEADLINE_SECONDS + 1)
        assert share_deliveries_expire_task() == 1
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "deadline"

    def test_a_delivery_within_its_deadline_stays(self, delivery, clock, settings):
        clock.advance(settings.SHARE_DELIVERY_DEADLINE_SECONDS - 60)
        assert share_deliveries_expire_task() == 0
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING

    def test_running_the_expiry_twice_fails_it_once(self, delivery, clock, settings):
        clock.advance(settings.SHARE_DELIVERY_DEADLINE_SECONDS + 1)
        assert share_deliveries_expire_task() == 1
        assert share_deliveries_expire_task() == 0
        assert delivery.transitions.filter(to_status=DeliveryStatus.FAILED).count() == 1


class TestNoncePurge:
    def test_nonces_past_twice_the_window_are_forgotten(self, client, bob, delivery, clock):
        post(client, REQUEST, request_body(delivery.backup_id, PrivateKey(), timestamp=clock.timestamp()), bob)
        clock.advance(599)
        assert share_delivery_requests_purge_task() == 0
        clock.advance(2)
        assert share_delivery_requests_purge_task() == 1
        assert not ShareDeliveryRequest.objects.exists()


class TestBackoff:
    @pytest.mark.parametrize("tries,seconds", [(1, 1), (2, 2), (3, 4), (4, 8), (20, 300)])
    def test_the_wait_doubles_per_try_up_to_its_cap(self, tries, seconds):
        assert services.retry_backoff_seconds(tries) == seconds


class TestCommand:
    def test_status_prints_the_state_and_its_history(self, delivery):
        out = run("status", str(delivery.pk))
        assert f"{delivery.pk} PENDING" in out and "- -> PENDING (deposited" in out

    def test_list_filters_by_state(self, delivery, client, family, alice, bob):
        other = ShareDelivery.objects.get(pk=deposit(client, alice, bob, b"x").json()["data"]["delivery_id"])
        failed(other)
        out = run("list", "--state", "FAILED")
        assert str(other.pk) in out and str(delivery.pk) not in out

    def test_retry_puts_a_failed_delivery_back_to_pending_and_audits_it(
        self, delivery, django_capture_on_commit_callbacks
    ):
        failed(delivery)
        with django_capture_on_commit_callbacks(execute=True):
            out = run("retry", str(delivery.pk))
        assert "back to PENDING" in out
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING and delivery.retry_count == 0 and delivery.last_error == ""
        event = AuditEvent.objects.filter(event_type=EventType.SHARE_DELIVERY_CHANGED).last()
        assert event.details["reason"] == "operator_retry" and event.details["from"] == "FAILED"

    def test_retry_refuses_a_delivery_that_is_not_failed(self, delivery):
        with pytest.raises(CommandError, match="INVALID_STATE"):
            run("retry", str(delivery.pk))

    def test_retry_refuses_a_delivery_replaced_by_a_newer_deposit(self, client, alice, bob, delivery):
        deposit(client, alice, bob, b"newer", backup_id=delivery.backup_id)
        with pytest.raises(CommandError, match="INVALID_STATE"):
            run("retry", str(delivery.pk))
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED

    def test_status_of_an_unknown_id_fails(self, db):
        with pytest.raises(CommandError, match="DELIVERY_NOT_FOUND"):
            run("status", str(uuid.uuid4()))


def test_the_periodic_tasks_are_declared():
    names = {spec.task for spec in PERIODIC_TASKS}
    # Server backups declare theirs in the same app list (apps/backups/engine/tasks.py).
    assert {"backups.share_deliveries_expire", "backups.share_delivery_requests_purge"} <= names



class TestMasterKeyRotation:
    def test_shares_and_the_server_key_are_rewrapped_under_a_new_master_key(self, client, family, alice, bob, tmp_path):
        from signer.custody import LocalKeyFileCustody

        from apps.backups.delivery import keys
        from apps.backups.delivery.models import DeliveryServerKey

        custody = LocalKeyFileCustody(tmp_path / "master-key.json")
        keys._custody = custody  # this test's own keyring, so rotating it touches no other test
        share = os.urandom(32)
        delivery = ShareDelivery.objects.get(pk=deposit(client, alice, bob, share).json()["data"]["delivery_id"])
        public_key = keys.server_public_key()
        new_master = custody.rotate()
        assert keys.delivery_master_keys_rewrap(custody_=custody, new_master=new_master) == set()
        custody.retire(keep={new_master})
        delivery.refresh_from_db()
        assert delivery.master_key_id == new_master
        assert keys.share_unwrap(delivery_id=delivery.pk, blob=bytes(delivery.wrapped_share)) == share
        keys.server_key_forget()
        keys._custody = custody
        assert DeliveryServerKey.objects.get().master_key_id == new_master
        assert keys.server_public_key() == public_key


class TestTheSigningRotationCommand:
    def test_rotating_the_master_key_keeps_every_stored_share_readable(self, client, family, alice, bob, signer_sidecar):
        from apps.backups.delivery import keys
        from signer.custody import custody_from_environ

        share = os.urandom(32)
        delivery_id = deposit(client, alice, bob, share).json()["data"]["delivery_id"]
        before = ShareDelivery.objects.get(pk=delivery_id).master_key_id
        call_command("signing", "rotate-master-key")  # what an operator runs; it retires old master keys
        delivery = ShareDelivery.objects.get(pk=delivery_id)
        assert delivery.master_key_id != before
        keys._custody = custody_from_environ()  # a fresh process's view of the key file
        assert keys.share_unwrap(delivery_id=delivery.pk, blob=bytes(delivery.wrapped_share)) == share


class TestCustodyDown:
    """KMS unreachable: deposits and requests answer RETRY_LATER and change nothing."""

    @pytest.fixture
    def kms_down(self, monkeypatch):
        from signer.custody import CustodyUnavailable

        from apps.backups.delivery import keys

        class Down:
            def wrap(self, plaintext, *, context):
                raise CustodyUnavailable("KMS unreachable")

            unwrap = wrap

        keys.custody()  # the real one first, so the fixture's replacement is what stays
        monkeypatch.setattr(keys, "_custody", Down())

    def test_a_deposit_is_retry_later_and_keeps_nothing(self, client, family, alice, bob, kms_down):
        response = deposit(client, alice, bob, b"share")
        assert response.status_code == 503 and response.json()["error"]["code"] == "RETRY_LATER"
        assert response["Retry-After"] == "5"
        assert not ShareDelivery.objects.exists()

    def test_a_request_is_retry_later_and_the_delivery_stays_pending(self, client, bob, delivery, monkeypatch):
        from signer.custody import CustodyUnavailable

        from apps.backups.delivery import keys

        keys.server_key()  # made while custody was up

        def down(blob, *, context):
            raise CustodyUnavailable("KMS unreachable")

        monkeypatch.setattr(keys.custody(), "unwrap", down)
        response = post(client, REQUEST, request_body(delivery.backup_id, PrivateKey()), bob)
        assert response.status_code == 503 and response.json()["error"]["code"] == "RETRY_LATER"
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.PENDING and not ShareDeliveryRequest.objects.exists()
