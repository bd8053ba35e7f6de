"""The client's ring and refusals, and the sign path's in-memory API-key check."""

import asyncio
import time
import uuid

import pytest
from asgiref.sync import async_to_sync

from apps.quotas.services import ApiKeyRefused, api_key_create, api_keys_revoke
from apps.signing import callers
from apps.signing.client import SignerClient, SignerNode, SignerRing, SignerUnavailable
from homepocket.api.errors import Forbidden
from signer.protocol import WrappedKey


def _ring(names):
    return SignerRing([SignerNode(name, 1) for name in names])


def test_the_ring_names_every_signer_once_owner_first():
    ring = _ring(["a", "b", "c"])
    order = [n.path for n in ring.nodes_for(uuid.uuid4())]
    assert sorted(order) == ["a", "b", "c"]


def test_adding_a_signer_moves_only_the_keys_it_takes():
    keys = [uuid.uuid4() for _ in range(3000)]
    before = _ring(["a", "b", "c"])
    after = _ring(["a", "b", "c", "d"])
    moved = [k for k in keys if before.nodes_for(k)[0].path != after.nodes_for(k)[0].path]
    assert all(after.nodes_for(k)[0].path == "d" for k in moved)  # nothing moves between old signers
    assert 0.15 < len(moved) / len(keys) < 0.35  # about a quarter, not a reshuffle


def test_removing_a_signer_sends_its_keys_to_their_next_signer_on_the_ring():
    keys = [uuid.uuid4() for _ in range(1000)]
    full = _ring(["a", "b", "c"])
    without_b = _ring(["a", "c"])
    for k in keys:
        order = [n.path for n in full.nodes_for(k)]
        expected = order[1] if order[0] == "b" else order[0]
        assert without_b.nodes_for(k)[0].path == expected


def test_with_no_signer_listening_a_sign_is_signer_unavailable(tmp_path):
    client = SignerClient([str(tmp_path / "none-0.sock"), str(tmp_path / "none-1.sock")], timeout=1)

    async def sign():
        await client.sign(uuid.uuid4(), bytes(32), WrappedKey(b"x", b"y"))

    with pytest.raises(SignerUnavailable):
        asyncio.run(sign())


@pytest.mark.django_db(transaction=True)
def test_a_revoked_api_key_is_forgotten_as_soon_as_the_broadcast_carries_the_revocation():
    from homepocket.redis_clients import broadcast

    callers.callers_forget()
    assert broadcast.wait_listening()
    key, clear = api_key_create(name="svc", scopes=["signing"])
    assert async_to_sync(callers.caller_verify)(clear).api_key_id == key.pk
    api_keys_revoke(key_ids=[key.pk])
    deadline = time.monotonic() + 10  # a generous bound: the broadcast takes milliseconds
    while True:
        try:
            async_to_sync(callers.caller_verify)(clear)
        except ApiKeyRefused:
            break
        assert time.monotonic() < deadline, "the revocation never reached the sign path's memory"
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
def test_without_the_broadcast_a_revoked_api_key_is_refused_once_its_cached_verification_expires(monkeypatch, settings):
    import apps.quotas.services

    monkeypatch.setattr(apps.quotas.services, "api_keys_changed_announce", lambda ids: None)  # Redis unreachable
    clock = [1000.0]
    monkeypatch.setattr(callers, "now", lambda: clock[0])
    callers.callers_forget()
    key, clear = api_key_create(name="svc", scopes=["signing"])
    assert async_to_sync(callers.caller_verify)(clear).api_key_id == key.pk
    api_keys_revoke(key_ids=[key.pk])
    clock[0] += settings.SIGNING_API_KEY_CACHE_SECONDS - 1
    assert async_to_sync(callers.caller_verify)(clear).api_key_id == key.pk  # within the documented bound
    clock[0] += 2
    with pytest.raises(ApiKeyRefused):
        async_to_sync(callers.caller_verify)(clear)


@pytest.mark.django_db(transaction=True)
def test_an_api_key_without_the_signing_scope_is_forbidden_on_the_sign_path():
    callers.callers_forget()
    _, clear = api_key_create(name="auditor", scopes=["audit:read"])
    with pytest.raises(Forbidden):
        async_to_sync(callers.caller_verify)(clear)


def test_a_signer_socket_path_too_long_for_the_kernel_fails_the_start_up_checks(settings):
    from apps.signing.checks import check_signer_sockets

    settings.SIGNER_SOCKETS = ["/tmp/" + "x" * 120 + ".sock"]
    assert [e.id for e in check_signer_sockets(None)] == ["signing.E002"]
    settings.SIGNER_SOCKETS = []
    assert [e.id for e in check_signer_sockets(None)] == ["signing.E001"]


def test_a_signer_still_unlocking_is_unlock_required_with_a_jittered_50_to_200_ms_wait():
    from apps.signing.client import SignerRefused
    from apps.signing.services import _refusal
    from signer.protocol import Status

    waits = set()
    for _ in range(200):
        error = _refusal(SignerRefused(Status.UNLOCK_REQUIRED, "unlocking"))
        assert error.code == "UNLOCK_REQUIRED" and error.status == 503
        seconds = float(error.headers["Retry-After"])
        assert 0.05 <= seconds <= 0.2 and error.details["retry_after_ms"] == round(seconds * 1000)
        waits.add(seconds)
    assert len(waits) > 10  # jittered, not one fixed wait
    assert _refusal(SignerUnavailable("lost")).code == "RETRY_LATER"
    assert _refusal(SignerRefused(Status.INTERNAL, "x")).code == "RETRY_LATER"
