"""Draining on SIGTERM, metrics across worker processes, and answers when a dependency is down."""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from homepocket_client import DeviceIdentity, HomePocketClient, ServiceUnavailable
from tests.harness.live import LiveServer
from tests.harness.processes import children_of, descendants_of, survivors

pytestmark = pytest.mark.e2e

# What homepocket.server guarantees holds under either ASGI server (ASGI_SERVER).
both_servers = pytest.mark.parametrize("asgi_server", ["granian", "uvicorn"])


@both_servers
def test_sigterm_drains_health_first_while_requests_are_still_served(tmp_path, asgi_server):
    server = LiveServer(tmp_path, extra_env={"DRAIN_SECONDS": "10"}, server=asgi_server).start()
    try:
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        while httpx.get(f"{server.url}/health").status_code != 503:
            assert time.monotonic() < deadline, "health never turned 503"
            time.sleep(0.05)
        assert httpx.get(f"{server.url}/ready").status_code == 503
        # Still serving the API while the balancer takes the node out.
        with HomePocketClient(server.url) as api:
            assert api.create_book(DeviceIdentity.new("late")).created is True
        assert server.process.wait(30) == 0
        # The lifespan's parts (homepocket/lifespan.py, docs/cluster.md): in order, then in reverse.
        steps = [(r["event"], r["part"], r["outcome"]) for r in _log_records(server) if r.get("event") in ("lifespan_start", "lifespan_stop")]
        assert steps == [("lifespan_start", part, "ok") for part in STARTED] + [("lifespan_stop", part, "ok") for part in reversed(ORDER)]
    finally:
        server.stop()


ORDER = ["database", "redis", "buffers", "channel_layer", "signer_pool", "aggregates", "abuse", "heartbeat"]
STARTED = [part for part in ORDER if part != "buffers"]  # the buffers have nothing to start


def _log_records(server: LiveServer) -> list[dict]:
    records = []
    for line in server.log_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue  # a line of the ASGI server's own
    return records


@both_servers
def test_a_killed_server_leaves_no_worker_process_behind(tmp_path, asgi_server):
    server = LiveServer(tmp_path, workers=2, server=asgi_server).start()
    try:
        everyone = descendants_of(server.process.pid)
        assert len(everyone) >= 3  # the ASGI server and its two workers
        server.process.kill()  # SIGKILL: homepocket.server cannot clean up; PR_SET_PDEATHSIG must
        server.process.wait()
        assert survivors(everyone, timeout=30) == [], "processes outlived a killed homepocket.server"
    finally:
        server.stop()


# uvicorn only: granian 2.8.7's workers outlive a SIGKILLed granian master (found here, open; a
# killed homepocket.server is covered for both above, its SIGTERM reaches granian's master).
@pytest.mark.parametrize("asgi_server", ["uvicorn"])
def test_a_killed_asgi_server_takes_its_workers_with_it_and_the_supervisor_exits(tmp_path, asgi_server):
    server = LiveServer(tmp_path, workers=2, server=asgi_server).start()
    try:
        (asgi,) = children_of(server.process.pid)
        workers = descendants_of(asgi)
        assert len(workers) >= 2
        os.kill(asgi, signal.SIGKILL)
        assert server.process.wait(30) != 0  # the node says it stopped; its orchestrator restarts it
        assert survivors(workers, timeout=30) == [], "workers outlived their killed ASGI server"
    finally:
        server.stop()


def requests_total(metrics_text: str, route: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("homepocket_http_requests_total{") and f'route="{route}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@both_servers
def test_metrics_add_up_across_worker_processes(tmp_path, asgi_server):
    server = LiveServer(tmp_path, workers=2, server=asgi_server).start()
    try:
        before = requests_total(httpx.get(f"{server.url}/metrics").text, "/health")
        for _ in range(40):
            # A new connection each time, so the kernel spreads them over both workers.
            with httpx.Client() as fresh:
                assert fresh.get(f"{server.url}/health").status_code == 200
        # Whichever worker answers the scrape, it reports both workers' requests.
        for _ in range(6):
            with httpx.Client() as fresh:
                text = fresh.get(f"{server.url}/metrics").text
            assert requests_total(text, "/health") == before + 40
            assert "homepocket_http_request_duration_seconds_bucket" in text
    finally:
        server.stop()


def test_a_dead_database_answers_database_error_and_ready_503(tmp_path):
    server = LiveServer(tmp_path, extra_env={"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none", "DATABASE_POOL": "0"})
    server.start(migrate=False)
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        ready = httpx.get(f"{server.url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["components"]["database"]["status"] == "down"
        with HomePocketClient(server.url) as api, pytest.raises(ServiceUnavailable) as refused:
            api.create_book(DeviceIdentity.new("alice"))
        assert refused.value.code == "DATABASE_ERROR"
        assert refused.value.retry_after and refused.value.retry_after > 0
    finally:
        server.stop()


def test_a_dead_redis_fails_readiness_but_not_the_api(tmp_path):
    server = LiveServer(tmp_path, extra_env={"REDIS_URL": "redis://127.0.0.1:1/0"}).start()
    try:
        ready = httpx.get(f"{server.url}/ready", timeout=15)
        assert ready.status_code == 503
        components = ready.json()["components"]
        assert components["cache"]["status"] == "down"
        assert components["channel_layer"]["status"] == "down"
        assert components["database"]["status"] == "up"
        # Book creation needs neither the cache nor the channel layer: the API keeps working.
        with HomePocketClient(server.url) as api:
            alice = DeviceIdentity.new("alice")
            api.create_book(alice)
            assert api.list_devices(alice).total_count == 1
    finally:
        server.stop()
