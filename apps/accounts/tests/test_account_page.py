"""/account/: a holder sees its own keys only, with usage against quotas, and rotates one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.accounts.models import ApiKeyOwner
from apps.accounts.services import account_api_key_create, rotated_keys_retire
from apps.quotas.services import ApiKeyRefused, api_key_verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def holder(client):
    user = get_user_model().objects.create_user("holder", password="pw-holder-1")
    client.force_login(user)
    return user


def test_a_visitor_is_asked_to_sign_in(client):
    answer = client.get("/account/")
    assert answer.status_code == 302 and answer["Location"].startswith("/account/login/")


def test_signing_in_with_username_and_password_opens_the_account(client):
    get_user_model().objects.create_user("holder", password="pw-holder-1")
    answer = client.post("/account/login/", {"username": "holder", "password": "pw-holder-1"})
    assert answer.status_code == 302 and answer["Location"] == "/account/"
    assert client.get("/account/").status_code == 200


def test_one_account_never_sees_another_accounts_keys(client, holder):
    other = get_user_model().objects.create_user("other", password="pw-other-1")
    mine, _ = account_api_key_create(user=holder, name="mine", daily=100)
    theirs, _ = account_api_key_create(user=other, name="theirs", daily=100)
    page = client.get("/account/").content.decode()
    assert f"hp_{mine.prefix}_" in page
    assert f"hp_{theirs.prefix}_" not in page and "theirs" not in page
    # Nor can it rotate theirs: answered as if the key did not exist.
    assert client.post(f"/account/keys/{theirs.pk}/rotate").status_code == 404
    assert not ApiKeyOwner.objects.filter(user=holder).exclude(api_key=mine).exists()


def test_usage_shows_against_the_keys_quotas(client, holder):
    key, _ = account_api_key_create(user=holder, name="mine", daily=200, monthly=5000)
    page = client.get("/account/").content.decode()
    assert "0 of 200 requests today (0 %)" in page
    assert "0 of 5,000 requests this month (0 %)" in page
    assert f'id="chart-key-{key.prefix}"' in page


def test_rotation_shows_the_new_key_once_and_retires_the_old_after_the_grace(client, holder, settings):
    settings.API_KEY_ROTATION_GRACE_SECONDS = 3600
    old, old_clear = account_api_key_create(user=holder, name="mine", scopes=["signing"], daily=200)
    answer = client.post(f"/account/keys/{old.pk}/rotate")
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    new_clear = answer.context["clear"]
    new = api_key_verify(new_clear)
    assert (new.name, new.scopes, new.daily) == ("mine", ["signing"], 200)
    assert new_clear not in client.get("/account/").content.decode()  # shown once
    assert api_key_verify(old_clear).pk == old.pk  # still valid within the grace
    assert rotated_keys_retire() == 0
    assert rotated_keys_retire(now=timezone.now() + timedelta(hours=1, seconds=1)) == 1
    with pytest.raises(ApiKeyRefused):
        api_key_verify(old_clear)
    assert client.post(f"/account/keys/{old.pk}/rotate", follow=True).status_code == 200  # refused, said on the page
