"""Abuse signals through a real server: the lean sign route tallies a key's addresses, the process's
flush loop raises the flag and suspends the key, and the command lifts it (docs/quotas.md)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from tests.harness.cluster import server_kinds, start_server
from tests.harness.live import REPO

pytestmark = pytest.mark.e2e

ENV = {"ABUSE_FLUSH_SECONDS": "0.5", "ABUSE_IP_LIMIT": "3", "ABUSE_SUSPEND_API_KEYS": "1"}


@pytest.fixture(scope="module", params=server_kinds("node"))
def server(request, tmp_path_factory):
    started = start_server(request.param, tmp_path_factory.mktemp(f"abuse-{request.param}"), extra_env=ENV)
    yield started
    started.stop()


def _manage(server, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=server.env, check=True, capture_output=True, text=True
    ).stdout


def _sign(server, api_key: str, address: str) -> httpx.Response:
    """A sign request from `address`, a loopback source address: nginx (in the cluster) puts it in
    X-Forwarded-For for the nodes, which trust nginx alone; a single node sees it as the peer."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10) as http:
        return http.post(
            f"{server.url}/api/v1/signing/sign", json={"key_id": str(uuid.uuid4()), "digest": "00" * 32},
            headers={"Authorization": f"Api-Key {api_key}"},
        )  # fmt: skip


def _flags_counted(server) -> float:
    """homepocket_abuse_flags_total{many_ips, api_key} summed over the nodes (a cluster's nodes count apart)."""
    total = 0.0
    for node in getattr(server, "nodes", [server]):
        for line in httpx.get(f"{node.url}/metrics", timeout=10).text.splitlines():
            if line.startswith("homepocket_abuse_flags_total{") and 'signal="many_ips"' in line and 'subject="api_key"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_key_used_from_many_addresses_is_suspended_by_the_servers_own_flush_and_lifted_by_the_command(server):
    out = _manage(server, "apikey", "create", "--name", "leaked", "--scope", "signing")
    key_id = re.search(r"API key ([0-9a-f-]{36})", out).group(1)
    api_key = out.strip().splitlines()[-1]
    for octet in range(1, 5):  # a key that signs nothing of its own: 404 INVALID_KEY, still the key's request
        assert _sign(server, api_key, f"127.0.0.{10 + octet}").json()["error"]["code"] in ("INVALID_KEY", "API_KEY_SUSPENDED")

    deadline = time.monotonic() + 60  # generous: the flush runs every 0.5 s
    while (answer := _sign(server, api_key, "127.0.0.11")).status_code != 403:
        assert time.monotonic() < deadline, "the key was never suspended"
        time.sleep(0.2)
    assert answer.json()["error"]["code"] == "API_KEY_SUSPENDED"
    assert _flags_counted(server) == 1.0  # one flag, however many flushes and nodes saw the addresses

    _manage(server, "apikey", "unsuspend", key_id)
    deadline = time.monotonic() + 60  # every worker forgets its verified copy through the broadcast
    while (answer := _sign(server, api_key, "127.0.0.11")).status_code == 403:
        assert time.monotonic() < deadline, "the lifted key was still refused"
        time.sleep(0.2)
    assert answer.json()["error"]["code"] == "INVALID_KEY"  # signing works again (this key id is not its own)
