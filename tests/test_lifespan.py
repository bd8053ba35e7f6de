"""The process's lifespan: parts start in the written order and stop in reverse (homepocket/lifespan.py).

The ASGI lifespan protocol is driven here as a server drives it (startup, then shutdown messages);
tests/e2e/test_operations_e2e.py reads the same order from a real server's log.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import audit_event_record
from apps.cluster.heartbeat import nodes_live
from homepocket import lifespan as lifespan_module
from homepocket.lifespan import Part, lifespan, lifespan_start, lifespan_stop

ORDER = ["database", "redis", "buffers", "channel_layer", "signer_pool", "aggregates", "abuse", "heartbeat"]


@pytest.fixture
def isolated(settings, tmp_path):
    """This test's own heartbeats and Redis names; no signers (their pool is tested with real ones in e2e)."""
    settings.VAR_DIR = tmp_path
    settings.CACHE_KEY_PREFIX = f"{settings.CACHE_KEY_PREFIX}:life-{secrets.token_hex(4)}"
    settings.NODE_ID = "node-lifespan"
    settings.SIGNER_SOCKETS = []
    lifespan_module.steps.clear()
    yield
    lifespan_module.steps.clear()


async def _serve_lifespan(between) -> None:
    """Startup, `between()` while the process runs, shutdown: the messages a server sends."""
    inbox: asyncio.Queue = asyncio.Queue()
    sent: list[str] = []

    async def send(message):
        sent.append(message["type"])

    task = asyncio.create_task(lifespan({"type": "lifespan"}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    while "lifespan.startup.complete" not in sent:
        await asyncio.sleep(0.01)
    await between()
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


@pytest.mark.django_db(transaction=True)
def test_parts_start_in_the_written_order_and_stop_in_reverse(isolated):
    seen_running = {}

    async def running():
        seen_running["nodes"] = await asyncio.to_thread(lambda: [n.node for n in nodes_live()])
        # An event buffered in memory when the stop begins: the buffers part writes it before the
        # database part lets go of the connections.
        await asyncio.to_thread(audit_event_record, event_type="config.changed", outcome="success", target="lifespan-test")

    asyncio.run(_serve_lifespan(running))

    started = [name for action, name, outcome in lifespan_module.steps if action == "start"]
    stopped = [name for action, name, outcome in lifespan_module.steps if action == "stop"]
    assert started == [name for name in ORDER if name != "buffers"]  # the buffers have nothing to start
    assert stopped == list(reversed(ORDER))
    assert all(outcome == "ok" for _, _, outcome in lifespan_module.steps)
    assert seen_running["nodes"] == ["node-lifespan"]  # the heartbeat, last to start, was on
    assert nodes_live() == []  # and, first to stop, left at once
    assert AuditEvent.objects.filter(target="lifespan-test").count() == 1


def test_a_part_that_fails_to_start_or_stop_is_logged_and_the_others_go_on(caplog):
    lifespan_module.steps.clear()
    calls = []

    async def fails():
        raise ConnectionError("down")

    def recording(name):
        async def step():
            calls.append(name)

        return step

    parts = (Part("first", fails, fails), Part("second", recording("start second"), recording("stop second")))
    asyncio.run(lifespan_start(parts))
    asyncio.run(lifespan_stop(parts))
    assert calls == ["start second", "stop second"]
    assert lifespan_module.steps == [
        ("start", "first", "failed"), ("start", "second", "ok"), ("stop", "second", "ok"), ("stop", "first", "failed"),
    ]  # fmt: skip
    failed = [r for r in caplog.records if getattr(r, "part", None) == "first"]
    assert [r.event for r in failed] == ["lifespan_start", "lifespan_stop"] and all(r.error == "ConnectionError" for r in failed)
    lifespan_module.steps.clear()


def test_the_documented_table_lists_the_parts_in_their_order():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text()
    section = doc.split("## Start and stop order", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| \d \| `(\w+)` \|", section, re.M) == ORDER
    assert [part.name for part in lifespan_module.PARTS] == ORDER
