"""Operators see share deliveries in the admin by state, with their history, and can retry FAILED ones."""

from __future__ import annotations

import base64
import os

import pytest

from apps.backups.delivery.models import DeliveryStatus, ShareDelivery
from apps.backups.tests.delivery_calls import deposit

pytestmark = pytest.mark.django_db
SHARE = os.urandom(48)
LIST = "/admin/backups/sharedelivery/"


@pytest.fixture
def two(client, family, alice, bob):
    """A PENDING and a FAILED delivery of the family."""
    pending, failed = (ShareDelivery.objects.get(pk=deposit(client, alice, bob, SHARE).json()["data"]["delivery_id"])
                       for _ in range(2))  # fmt: skip
    ShareDelivery.objects.filter(pk=failed.pk).update(status=DeliveryStatus.FAILED, last_error="deadline")
    return pending, failed


def test_the_list_filters_by_state(admin_client, two):
    pending, failed = two
    page = admin_client.get(LIST, {"status__exact": "FAILED"}).content.decode()
    assert str(failed.pk) in page and str(pending.pk) not in page


def test_the_page_shows_the_history_and_never_the_share(admin_client, two):
    pending, _ = two
    page = admin_client.get(f"{LIST}{pending.pk}/change/").content.decode()
    assert "deposited" in page
    assert base64.b64encode(SHARE).decode() not in page and SHARE.hex() not in page
    assert "wrapped_share" not in page


def test_the_retry_action_puts_failed_ones_back_to_pending(admin_client, two):
    pending, failed = two
    response = admin_client.post(LIST, {"action": "retry_selected", "_selected_action": [str(failed.pk), str(pending.pk)]},
                                 follow=True)  # fmt: skip
    assert "1 delivery(ies) back to PENDING" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.PENDING


def test_deliveries_cannot_be_added_or_edited_by_hand(admin_client, two):
    assert admin_client.get(f"{LIST}add/").status_code == 403
    pending, _ = two
    admin_client.post(f"{LIST}{pending.pk}/change/", {"status": "CONFIRMED"})
    pending.refresh_from_db()
    assert pending.status == DeliveryStatus.PENDING
