"""Rate limits against real server processes: exact under concurrency, live policy edits, Redis down."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time

import httpx
import pytest

from homepocket_client import DeviceIdentity, HomePocketClient, RateLimited
from tests.harness.live import LiveServer, distributed
from tests.harness.ports import free_port, wait_for_port

pytestmark = pytest.mark.e2e


def generate(url: str, identity: DeviceIdentity) -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/pairing/generate", json={"book_id": str(identity.book_id)},
        headers={"Authorization": f"Bearer {identity.book_token()}"}, timeout=10,
    )  # fmt: skip


def founder(url: str) -> DeviceIdentity:
    identity = DeviceIdentity.new("quota test phone")
    with HomePocketClient(url, timeout=10) as client:
        client.create_book(identity)
    return identity


def until(predicate, *, within: float, what: str):
    """Poll `predicate` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


def test_the_client_library_sees_a_refusal_as_rate_limited_with_its_wait(tmp_path):
    # A server of its own: the shared e2e server lifts the pairing limits (tests/harness/live.py).
    server = LiveServer(tmp_path).start()
    try:
        with HomePocketClient(server.url, timeout=10) as api:
            alice = DeviceIdentity.new("client library quota test")
            api.create_book(alice)
            for _ in range(10):
                api.pairing_generate(alice)
            with pytest.raises(RateLimited) as refused:
                api.pairing_generate(alice)
            assert 1 <= refused.value.retry_after <= 3600
            assert refused.value.details["limit"] == 10
            usage = api.usage(alice)
        assert usage.plan == "free"
        assert (usage.quotas["pairing.generate"].used, usage.quotas["pairing.generate"].remaining) == (10, 0)
    finally:
        server.stop()


def test_two_hundred_simultaneous_requests_against_a_limit_of_fifty_get_exactly_fifty(tmp_path):
    # Two worker processes in the distributed mode: the count is Redis's, shared by both.
    server = LiveServer(tmp_path, workers=2 if distributed() else 1)
    server.start(setup=[["quota", "set", "pairing.generate", "--plan", "free", "--limit", "50"]])
    try:
        alice = founder(server.url)
        token = alice.book_token()

        async def fire() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
                start = asyncio.Event()

                async def one() -> httpx.Response:
                    await start.wait()
                    return await client.post(
                        "/api/v1/pairing/generate", json={"book_id": str(alice.book_id)},
                        headers={"Authorization": f"Bearer {token}"},
                    )  # fmt: skip

                tasks = [asyncio.create_task(one()) for _ in range(200)]
                await asyncio.sleep(0.2)
                start.set()
                return await asyncio.gather(*tasks)

        responses = asyncio.run(fire())
        allowed = [r for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code == 429]
        assert (len(allowed), len(refused)) == (50, 150), sorted({r.status_code for r in responses})
        # Each allowed request saw its own place in the count: no two were told the same.
        assert sorted(int(r.headers["X-RateLimit-Remaining"]) for r in allowed) == list(range(50))
        for response in refused:
            assert response.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
            assert response.headers["X-RateLimit-Limit"] == "50"
            assert response.headers["X-RateLimit-Remaining"] == "0"
            assert 1 <= int(response.headers["Retry-After"]) <= 3600
            assert int(response.headers["X-RateLimit-Reset"]) > time.time()
    finally:
        server.stop()


def test_a_policy_edited_in_the_admin_applies_on_a_second_server_within_ten_seconds(tmp_path):
    first = LiveServer(tmp_path / "a", extra_env={"DJANGO_SUPERUSER_PASSWORD": "correct horse battery"})
    first.start(setup=[["createsuperuser", "--noinput", "--username", "ops", "--email", "ops@example.com"]])
    second = LiveServer(tmp_path / "b", extra_env=first.peer_env()).start(migrate=False)
    try:
        alice = founder(first.url)

        def limit_seen_by_second() -> int | None:
            with HomePocketClient(second.url, timeout=10) as client:
                return client.usage(alice).quotas["pairing.generate"].limit

        assert limit_seen_by_second() == 10
        with httpx.Client(base_url=first.url, follow_redirects=True, timeout=10) as browser:
            login = browser.get("/admin/login/")
            browser.post("/admin/login/?next=/admin/", data={
                "username": "ops", "password": "correct horse battery", "csrfmiddlewaretoken": _csrf(login.text),
            })  # fmt: skip
            listing = browser.get("/admin/quotas/policy/", params={"q": "pairing.generate", "plan__exact": "free"})
            change_url = re.search(r'href="(/admin/quotas/policy/\d+/change/)[^"]*"', listing.text).group(1)
            form = browser.get(change_url)
            saved = browser.post(change_url, data={
                "csrfmiddlewaretoken": _csrf(form.text), "scope": "pairing.generate", "plan": "free",
                "subject": "device", "limit": "3", "window": "hour", "fail_mode": "closed",
                "description": "edited by the e2e test",
            })  # fmt: skip
            assert saved.status_code == 200 and "was changed successfully" in saved.text
        edited_at = time.monotonic()
        until(lambda: limit_seen_by_second() == 3, within=10, what="the second server applies the edit")
        assert time.monotonic() - edited_at <= 10
        statuses = [generate(second.url, alice).status_code for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
    finally:
        second.stop()
        first.stop()


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, which the test may stop and start again."""

    class PrivateRedis:
        port = free_port()
        process: subprocess.Popen | None = None

        def start(self):
            self.process = subprocess.Popen(
                [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_for_port(self.port, process=self.process)

        def stop(self):
            if self.process and self.process.poll() is None:
                self.process.terminate()
                self.process.wait(10)

    redis_server = PrivateRedis()
    redis_server.start()
    yield redis_server
    redis_server.stop()


def test_with_redis_stopped_a_closed_policy_refuses_and_an_open_one_lets_through(tmp_path, private_redis):
    server = LiveServer(tmp_path, extra_env={
        "RATELIMIT_REDIS_URL": f"redis://127.0.0.1:{private_redis.port}/0", "RATELIMIT_POLICY_TTL": "0.2",
    }).start()  # fmt: skip
    try:
        alice = founder(server.url)
        counted = generate(server.url, alice)
        assert counted.status_code == 201 and counted.headers["X-RateLimit-Remaining"] == "9"

        private_redis.stop()
        closed = generate(server.url, alice)
        assert closed.status_code == 503
        assert closed.json()["error"]["code"] == "RETRY_LATER"
        assert int(closed.headers["Retry-After"]) >= 1
        assert "rate-limit store unreachable" in server.log_text()
        errors = re.search(r"^homepocket_ratelimit_store_errors_total (\S+)$", httpx.get(f"{server.url}/metrics").text, re.M)
        assert errors and float(errors.group(1)) >= 1

        server.manage("quota", "set", "pairing.generate", "--plan", "free", "--fail-mode", "open")
        opened = until(
            lambda: (r := generate(server.url, alice)).status_code == 201 and r, within=10, what="fail open applies"
        )
        assert "X-RateLimit-Remaining" not in opened.headers  # nothing counted, nothing claimed

        private_redis.start()  # an empty Redis: counting starts again once the store is retried
        recovered = until(
            lambda: "X-RateLimit-Remaining" in (r := generate(server.url, alice)).headers and r,
            within=10, what="the limiter uses Redis again",
        )  # fmt: skip
        assert recovered.status_code == 201 and recovered.headers["X-RateLimit-Remaining"] == "9"
    finally:
        server.stop()
