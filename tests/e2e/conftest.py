"""End-to-end fixtures: real server processes on free ports (tests/harness/live.py)."""

from __future__ import annotations

import pytest

from homepocket_client import HomePocketClient
from tests.harness.live import PAIRING_UNLIMITED, LiveServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """One web server for the session, on its own fresh database."""
    server = LiveServer(tmp_path_factory.mktemp("live")).start(setup=PAIRING_UNLIMITED)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_uvicorn(tmp_path_factory):
    """The same server under uvicorn (ASGI_SERVER=uvicorn), started when a test first asks for it."""
    server = LiveServer(tmp_path_factory.mktemp("live-uvicorn"), server="uvicorn").start(setup=PAIRING_UNLIMITED)
    yield server
    server.stop()


@pytest.fixture
def api(live):
    with HomePocketClient(live.url, timeout=10) as client:
        yield client
