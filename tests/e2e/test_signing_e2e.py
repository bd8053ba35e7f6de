"""Signing through a real server (the lean sign route under granian) and real signer processes."""

import asyncio
import base64
import json
import os
import re
import subprocess
import sys

import httpx
import pytest
from coincurve import PublicKey

from apps.signing.client import SignerNode, SignerRing
from homepocket_client import HomePocketClient, SigningClient
from tests.harness.cluster import Cluster, server_kinds, start_server
from tests.harness.live import REPO, LiveServer

pytestmark = pytest.mark.e2e


def _api_key(server: LiveServer) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", "apikey", "create", "--name", "svc", "--scope", "signing"],
        cwd=REPO, env=server.env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.strip().splitlines()[-1]


def _recovers(public_key: bytes, digest: bytes, signature: bytes, recovery_id: int) -> bool:
    return PublicKey.from_signature_and_message(signature + bytes([recovery_id]), digest, hasher=None).format() == public_key


@pytest.fixture(scope="module", params=server_kinds("node"))
def signing_server(request, tmp_path_factory):
    """Two signers per node; in the distributed run also two such nodes behind nginx."""
    server = start_server(request.param, tmp_path_factory.mktemp(f"signing-{request.param}"), signers=2)
    yield server
    server.stop()


@pytest.fixture
def signing(signing_server):
    with HomePocketClient(signing_server.url, timeout=10) as http:
        # A generous unlock budget: these tests are about routing and fail-over on a machine that
        # may be busy, not about the client's 200 ms default (homepocket_client/tests/test_signing.py).
        yield SigningClient(http, api_key=_api_key(signing_server), unlock_budget=10.0)


def _post_sign(server, api_key, key_id, digest_hex):
    return httpx.post(f"{server.url}/api/v1/signing/sign", json={"key_id": str(key_id), "digest": digest_hex},
                      headers={"Authorization": f"Api-Key {api_key}"}, timeout=10)  # fmt: skip


def test_create_then_sign_through_the_lean_route_verifies_and_recovers(signing_server, signing):
    key = signing.create_key()
    digest = os.urandom(32)
    sig = signing.sign(key.key_id, digest)
    assert _recovers(key.public_key, digest, sig.signature, sig.recovery_id)
    assert PublicKey(key.public_key).verify(sig.der, digest, hasher=None)


@pytest.mark.parametrize("size", [31, 33])
def test_the_lean_route_refuses_other_digest_sizes(signing_server, signing, size):
    key = signing.create_key()
    api_key = signing._headers["Authorization"].split(" ", 1)[1]
    response = _post_sign(signing_server, api_key, key.key_id, os.urandom(size).hex())
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert response.headers["x-request-id"] == response.json()["meta"]["request_id"]


def test_the_lean_route_refuses_another_api_keys_key_and_a_bad_api_key(signing_server, signing):
    key = signing.create_key()
    other = _api_key(signing_server)
    response = _post_sign(signing_server, other, key.key_id, os.urandom(32).hex())
    assert response.status_code == 404 and response.json()["error"]["code"] == "INVALID_KEY"
    response = _post_sign(signing_server, "hp_nope_nope", key.key_id, os.urandom(32).hex())
    assert response.status_code == 401 and response.json()["error"]["code"] == "INVALID_TOKEN"


def test_the_sign_route_is_in_the_api_docs_with_its_error_codes(signing_server):
    schema = httpx.get(f"{signing_server.url}/api/schema/?format=json", timeout=10).json()
    responses = schema["paths"]["/api/v1/signing/sign"]["post"]["responses"]
    codes = set()
    for response in responses.values():
        for media in response.get("content", {}).values():
            codes |= set(media["schema"].get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum", []))
    assert {"INVALID_ARGUMENT", "INVALID_KEY", "UNLOCK_REQUIRED", "RETRY_LATER", "INVALID_TOKEN"} <= codes
    assert "/api/v1/signing/keys" in schema["paths"]


def test_a_dead_signer_fails_over_to_the_next_on_the_ring(signing_server, signing):
    ring = SignerRing([SignerNode(path, 1) for path in signing_server.signers.paths])
    while True:  # a key whose owner is signer 0
        key = signing.create_key()
        if ring.nodes_for(key.key_id)[0].path == signing_server.signers.paths[0]:
            break
    signing_server.signers.kill(0)
    try:
        digest = os.urandom(32)
        sig = signing.sign(key.key_id, digest)  # signer 1 unlocks it from the wrapped material
        assert _recovers(key.public_key, digest, sig.signature, sig.recovery_id)
    finally:
        signing_server.signers.start(0)


def test_a_signer_killed_under_load_costs_retry_later_then_signing_recovers(tmp_path):
    server = LiveServer(tmp_path, signers=1).start()
    try:
        with HomePocketClient(server.url, timeout=10) as http:
            api_key = _api_key(server)
            signing = SigningClient(http, api_key=api_key, unlock_budget=10.0)
            key = signing.create_key()
            outcomes = asyncio.run(_load_while_killing(server, api_key, key))
            assert outcomes["wrong"] == 0
            assert outcomes["ok"] > 0 and outcomes["RETRY_LATER"] > 0
            assert set(outcomes) <= {"ok", "wrong", "RETRY_LATER", "UNLOCK_REQUIRED"}
            digest = os.urandom(32)
            sig = signing.sign(key.key_id, digest)  # the restarted signer unlocks it again
            assert _recovers(key.public_key, digest, sig.signature, sig.recovery_id)
        _assert_no_private_key_in_dump_or_logs(server, [key.public_key])
    finally:
        server.stop()


async def _load_while_killing(server, api_key, key):
    outcomes = {"ok": 0, "wrong": 0, "RETRY_LATER": 0}
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=server.url, timeout=5, headers={"Authorization": f"Api-Key {api_key}"}) as client:

        async def worker():
            while not stop.is_set():
                digest = os.urandom(32)
                response = await client.post("/api/v1/signing/sign", json={"key_id": str(key.key_id), "digest": digest.hex()})
                if response.status_code == 200:
                    d = response.json()["data"]
                    ok = _recovers(key.public_key, digest, bytes.fromhex(d["signature"]), d["recovery_id"])
                    outcomes["ok" if ok else "wrong"] += 1
                else:
                    code = response.json()["error"]["code"]
                    outcomes[code] = outcomes.get(code, 0) + 1
                    await asyncio.sleep(0.01)

        workers = [asyncio.create_task(worker()) for _ in range(8)]
        await asyncio.sleep(0.5)
        server.signers.kill(0)
        await asyncio.sleep(0.5)
        server.signers.start(0)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)  # a hung request would raise httpx's timeout here
    return outcomes


HEX64 = re.compile(rb"[0-9a-fA-F]{64}")


def _candidates(blob: bytes):
    """Every 32-byte string that could be a private key written raw, as hex, or as base64."""
    for i in range(len(blob) - 31):
        yield blob[i : i + 32]
    for match in HEX64.finditer(blob):
        yield bytes.fromhex(match.group().decode())
    for token in re.findall(rb"[A-Za-z0-9+/=]{44,}", blob):
        try:
            decoded = base64.b64decode(token)
        except ValueError:
            continue
        for i in range(len(decoded) - 31):
            yield decoded[i : i + 32]


def _assert_no_private_key_in_dump_or_logs(server, public_keys):
    dump = subprocess.run([sys.executable, "manage.py", "dumpdata"], cwd=REPO, env=server.env, check=True,
                          capture_output=True).stdout  # fmt: skip
    assert json.loads(dump)
    logs = server.log_text().encode() + server.signers.log_text().encode()
    wanted = set(public_keys)
    for candidate in _candidates(dump + b"\n" + logs):
        try:
            derived = PublicKey.from_secret(candidate).format()
        except ValueError:
            continue
        assert derived not in wanted, "a private key is in the database dump or the logs"




def test_the_lean_route_spends_the_keys_per_minute_quota_and_refuses_past_it(signing_server):
    out = subprocess.run(
        [sys.executable, "manage.py", "apikey", "create", "--name", "capped", "--scope", "signing", "--rpm", "4"],
        cwd=REPO, env=signing_server.env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    api_key = out.strip().splitlines()[-1]
    created = httpx.post(f"{signing_server.url}/api/v1/signing/keys", headers={"Authorization": f"Api-Key {api_key}"}, timeout=10)
    assert created.status_code == 201 and created.headers["X-RateLimit-Remaining"] == "3"  # creating counts too
    signs = [_post_sign(signing_server, api_key, created.json()["data"]["key_id"], os.urandom(32).hex()) for _ in range(4)]
    if isinstance(signing_server, Cluster):
        # Through nginx a sign may reach the other node, whose signers have not unlocked the new key:
        # its first answer there can be UNLOCK_REQUIRED (docs/signing.md), which counts like any
        # authenticated request (docs/quotas.md).
        assert all(r.status_code == 200 or r.json()["error"]["code"] == "UNLOCK_REQUIRED" for r in signs[:3])
        assert signs[3].status_code == 429
    else:
        assert [r.status_code for r in signs] == [200, 200, 200, 429]
    assert [r.headers.get("X-RateLimit-Remaining") for r in signs[:3]] == ["2", "1", "0"]
    refused = signs[3]
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.json()["error"]["details"]["policy"] == "api_key.minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
