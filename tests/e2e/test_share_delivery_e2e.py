"""Share delivery over a live server with the client SDK: the whole flow, races, lost answers, tampering."""

from __future__ import annotations

import base64
import os
import threading
import time
import uuid

import httpx
import pytest
from coincurve import PrivateKey

from homepocket_client import Conflict, DeviceIdentity, HomePocketClient, InvalidArgument
from homepocket_client.delivery import RetryPolicy, ShareDeliveryClient, ShareVerificationError
from tests.harness.cutting_proxy import CuttingProxy
from tests.harness.cluster import server_kinds, start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=server_kinds("lean route", "django"))
def live(request, tmp_path_factory):
    """A server of this module's own (and so its own rate-limit counts, tests/harness/live.py): one
    node, and in the distributed run also two nodes behind nginx (tests/harness/cluster.py).

    Every test runs against a server answering the request endpoint from its lean ASGI route, then
    against one answering it through Django and DRF (DELIVERY_LEAN_ROUTE). The server's backoff
    between failed attempts starts at 10 ms here, so five failures take no time; the request quota
    is lifted, since these tests ask for shares far more often than a device would.
    """
    lean = request.param != "django"  # the cluster's nodes run the default: the lean route
    env = {"SHARE_DELIVERY_RETRY_BASE_SECONDS": "0.01", "DELIVERY_LEAN_ROUTE": "1" if lean else "0"}
    kind = "cluster" if request.param == "cluster" else "node"
    server = start_server(kind, tmp_path_factory.mktemp(f"share-delivery-{kind}"), extra_env=env,
                          setup=[["quota", "set", "backup.request", "--plan", "free", "--limit", "unlimited"]])  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def family(live):
    """alice founded a book on the live server; bob's phone paired into it."""
    alice, bob = DeviceIdentity.new("alice's phone"), DeviceIdentity.new("bob's phone")
    with HomePocketClient(live.url, timeout=10) as http:
        http.create_book(alice)
        http.pairing_verify(bob, http.pairing_generate(alice).short_code)
    return alice, bob


@pytest.fixture
def pinned_key(live) -> bytes:
    return bytes.fromhex(httpx.get(f"{live.url}/api/v1/backup/delivery/server_key").json()["data"]["public_key"])


def _history(live, delivery_id) -> list[str]:
    out = live.manage("share_delivery", "status", str(delivery_id))
    return [line.strip().split(" (")[0].split(" ", 1)[1] for line in out.splitlines()[1:]]


def test_deposit_request_verify_decrypt_confirm_with_status_through_each_state(live, api, family, pinned_key):
    alice, bob = family
    delivery = ShareDeliveryClient(api, server_public_key=pinned_key)
    backup_id, share = uuid.uuid4(), os.urandom(512)
    deposited = delivery.deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=share)
    assert deposited.status == "PENDING"
    assert delivery.status(alice, deposited.delivery_id).status == "PENDING"

    received = delivery.request(bob, backup_id=backup_id)
    assert received.share == share and received.delivery_id == deposited.delivery_id
    assert delivery.status(alice, deposited.delivery_id).status == "DELIVERED"

    state = delivery.confirm(bob, received)
    assert state.status == "CONFIRMED" and state.client_id == bob.device_id
    seen = delivery.status(bob, deposited.delivery_id)
    assert seen.status == "CONFIRMED" and seen.delivered_at and seen.confirmed_at and seen.retry_count == 0
    assert _history(live, deposited.delivery_id) == ["- -> PENDING", "PENDING -> DELIVERED", "DELIVERED -> CONFIRMED"]


def test_fifty_simultaneous_requests_get_one_share_and_one_delivery(live, family, pinned_key):
    alice, bob = family
    share, backup_id = os.urandom(256), uuid.uuid4()
    with HomePocketClient(live.url, timeout=30) as http:
        deposited = ShareDeliveryClient(http, server_public_key=pinned_key).deposit(
            alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=share
        )
    barrier, results, errors = threading.Barrier(50), [], []

    def ask():
        with HomePocketClient(live.url, timeout=60) as http:
            client = ShareDeliveryClient(http, server_public_key=pinned_key)
            barrier.wait()
            try:
                results.append(client.request(bob, backup_id=backup_id))
            except Exception as error:  # noqa: BLE001 — collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 50 and {r.share for r in results} == {share}
    assert {r.delivery_id for r in results} == {deposited.delivery_id}
    assert _history(live, deposited.delivery_id) == ["- -> PENDING", "PENDING -> DELIVERED"]


def test_the_same_request_racing_with_itself_gets_one_answer(live, family, pinned_key):
    alice, bob = family
    backup_id = uuid.uuid4()
    with HomePocketClient(live.url, timeout=30) as http:
        ShareDeliveryClient(http, server_public_key=pinned_key).deposit(
            alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=b"one share"
        )
    body = {"backup_id": str(backup_id), "client_public_key": PrivateKey().public_key.format().hex(),
            "timestamp": int(time.time()), "nonce": base64.urlsafe_b64encode(os.urandom(18)).decode()}  # fmt: skip
    barrier, answers = threading.Barrier(20), []

    def ask():
        with HomePocketClient(live.url, timeout=60) as http:
            barrier.wait()
            answers.append(http.request("POST", "/api/v1/backup/delivery/request", identity=bob, json=body))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 20 and all(answer == answers[0] for answer in answers)


def test_lost_answers_are_asked_again_and_end_confirmed_with_one_delivery(live, family, pinned_key):
    alice, bob = family
    share, backup_id = os.urandom(128), uuid.uuid4()
    proxy = CuttingProxy(live.port, {"/api/v1/backup/delivery/request": 1, "/api/v1/backup/delivery/confirm": 1})
    try:
        with HomePocketClient(proxy.url, timeout=10) as http:
            delivery = ShareDeliveryClient(http, server_public_key=pinned_key, retry=RetryPolicy(base_seconds=0.01))
            deposited = delivery.deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=share)
            received = delivery.receive(bob, backup_id=backup_id)
            assert received.share == share
            assert proxy.cut_done == ["/api/v1/backup/delivery/request", "/api/v1/backup/delivery/confirm"]
            assert delivery.status(bob, deposited.delivery_id).status == "CONFIRMED"
    finally:
        proxy.close()
    assert _history(live, deposited.delivery_id) == ["- -> PENDING", "PENDING -> DELIVERED", "DELIVERED -> CONFIRMED"]
    listed = live.manage("share_delivery", "list", "--limit", "1000")
    assert sum(f"backup={backup_id}" in line for line in listed.splitlines()) == 1


def test_an_answer_signed_by_another_key_is_refused(live, api, family):
    alice, bob = family
    backup_id = uuid.uuid4()
    pinned_elsewhere = PrivateKey().public_key.format()
    delivery = ShareDeliveryClient(api, server_public_key=pinned_elsewhere)
    deposited = delivery.deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=b"s")
    with pytest.raises(ShareVerificationError) as refused:
        delivery.receive(bob, backup_id=backup_id)
    assert refused.value.reason == "signature"
    assert delivery.status(bob, deposited.delivery_id).status == "DELIVERED"  # never confirmed


def test_a_stale_nonce_reuse_is_a_replay_and_not_retried(live, api, family):
    alice, bob = family
    backup_id = uuid.uuid4()
    ShareDeliveryClient(api).deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=b"s")
    body = {"backup_id": str(backup_id), "client_public_key": PrivateKey().public_key.format().hex(),
            "timestamp": int(time.time()) - 3600, "nonce": "n" * 20}  # fmt: skip
    with pytest.raises(InvalidArgument) as refused:
        api.request("POST", "/api/v1/backup/delivery/request", identity=bob, json=body)
    assert refused.value.code == "REPLAY_DETECTED"


def test_confirming_a_pending_delivery_is_a_conflict(live, api, family):
    alice, bob = family
    delivery = ShareDeliveryClient(api)
    deposited = delivery.deposit(alice, backup_id=uuid.uuid4(), recipient_device_id=bob.device_id, share=b"s")
    body = {"delivery_id": str(deposited.delivery_id), "received_successfully": True, "share_sha256": "0" * 64}
    with pytest.raises(Conflict) as refused:
        api.request("POST", "/api/v1/backup/delivery/confirm", identity=bob, json=body)
    assert refused.value.code == "INVALID_STATE"


def test_racing_deposits_for_one_backup_and_device_leave_one_live_delivery(live, family, pinned_key):
    alice, bob = family
    backup_id, barrier, deposited = uuid.uuid4(), threading.Barrier(10), []

    def give(i):
        with HomePocketClient(live.url, timeout=60) as http:
            barrier.wait()
            deposited.append(ShareDeliveryClient(http, server_public_key=pinned_key).deposit(
                alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=f"share {i}".encode()
            ))  # fmt: skip

    threads = [threading.Thread(target=give, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(deposited) == 10
    listed = [line for line in live.manage("share_delivery", "list", "--limit", "1000").splitlines()
              if f"backup={backup_id}" in line]  # fmt: skip
    states = sorted(line.split()[1] for line in listed)
    assert states == ["FAILED"] * 9 + ["PENDING"]
    with HomePocketClient(live.url, timeout=30) as http:
        received = ShareDeliveryClient(http, server_public_key=pinned_key).receive(bob, backup_id=backup_id)
    live_one = next(line.split()[0] for line in listed if " PENDING " in line)
    assert str(received.delivery_id) == live_one


def test_five_failed_tries_fail_it_and_an_operator_retry_lets_it_be_confirmed(live, api, family, pinned_key):
    alice, bob = family
    delivery = ShareDeliveryClient(api, server_public_key=pinned_key, retry=RetryPolicy(base_seconds=0.01))
    backup_id, share = uuid.uuid4(), os.urandom(64)
    deposited = delivery.deposit(alice, backup_id=backup_id, recipient_device_id=bob.device_id, share=share)
    seen = []
    for _ in range(5):
        received = delivery.request(bob, backup_id=backup_id)
        state = delivery.report_failure(bob, received.delivery_id)
        seen.append((state.status, state.retry_count))
    assert seen == [("PENDING", 1), ("PENDING", 2), ("PENDING", 3), ("PENDING", 4), ("FAILED", 5)]
    status = delivery.status(alice, deposited.delivery_id)
    assert (status.status, status.last_error) == ("FAILED", "not_received")
    with pytest.raises(Conflict):
        delivery.request(bob, backup_id=backup_id)

    assert "back to PENDING" in live.manage("share_delivery", "retry", str(deposited.delivery_id))
    assert delivery.receive(bob, backup_id=backup_id).share == share
    assert delivery.status(alice, deposited.delivery_id).status == "CONFIRMED"
