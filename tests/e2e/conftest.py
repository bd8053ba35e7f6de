"""End-to-end fixtures: real server processes on free ports (tests/harness/live.py).

In the distributed run the pairing, relay, photo, signing and share-delivery suites run twice:
against one node, and through nginx in front of two nodes with a worker and beat
(tests/harness/cluster.py). The embedded run has no PostgreSQL or Redis to share between nodes,
so the cluster variant, and the cluster's own tests, exist only in the distributed run.
"""

from __future__ import annotations

import pytest

from homepocket_client import HomePocketClient
from tests.harness.cluster import start_server
from tests.harness.live import PAIRING_UNLIMITED, LiveServer, distributed

pytestmark = pytest.mark.e2e

# The cluster's own tests (node kills, nginx's headers) need the distributed mode.
collect_ignore = [] if distributed() else ["test_cluster_e2e.py"]


@pytest.fixture(scope="session")
def live_node(tmp_path_factory):
    """One web server for the session, on its own fresh database."""
    server = LiveServer(tmp_path_factory.mktemp("live")).start(setup=PAIRING_UNLIMITED)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live(live_node):
    """The session's server; a module that also runs through the cluster overrides it with a parametrized `live`."""
    return live_node


@pytest.fixture(scope="session")
def live_cluster(tmp_path_factory):
    """One cluster for the session (distributed run only), shared like `live`."""
    cluster = start_server("cluster", tmp_path_factory.mktemp("cluster"), setup=PAIRING_UNLIMITED)
    yield cluster
    cluster.stop()


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
