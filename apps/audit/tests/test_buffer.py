"""The audit write buffer: requests do not wait for the audit write; batches, order, bounds, exit."""

from __future__ import annotations

import signal
import time

import pytest
from prometheus_client import REGISTRY

from apps.audit.buffer import AuditBuffer
from apps.audit.models import AuditEvent, EventType
from apps.audit.services import audit_buffer, audit_event_record, audit_events_flush
from homepocket_client import DeviceIdentity, HomePocketClient
from tests.harness.live import LiveServer


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
def buffered(settings):
    """Buffering on, with an interval long enough that only the test decides when to flush."""
    settings.AUDIT_FLUSH_INTERVAL = 3600
    yield
    audit_buffer.stop()  # its thread waits an hour otherwise


def record(book_id="b"):
    audit_event_record(event_type=EventType.BOOK_CREATED, outcome="success", book_id=book_id)


@pytest.mark.django_db
def test_a_committed_event_waits_in_the_buffer_not_in_the_request(buffered, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        record()
    assert AuditEvent.objects.count() == 0
    assert audit_buffer.depth() == 1
    assert metric("homepocket_audit_buffer_events") == 1
    assert audit_events_flush() == 1
    assert AuditEvent.objects.count() == 1 and audit_buffer.depth() == 0


@pytest.mark.django_db
def test_a_rolled_back_event_never_reaches_the_buffer(buffered, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        record()
    assert audit_buffer.depth() == 0


@pytest.mark.django_db(transaction=True)
def test_the_background_thread_writes_the_buffer_in_order(settings):
    settings.AUDIT_FLUSH_INTERVAL = 0.05
    for n in range(5):
        record(book_id=f"book-{n}")  # no transaction open: on_commit runs at once
    deadline = time.monotonic() + 10
    while AuditEvent.objects.count() < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    audit_buffer.stop()
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == 5
    assert [e.prev_hash for e in events[1:]] == [e.row_hash for e in events[:-1]]


def test_a_failed_write_keeps_the_batch_in_order_for_the_next_try(settings):
    settings.AUDIT_FLUSH_INTERVAL = 3600
    written, failures = [], iter([True, False, False, False])

    def write(batch):
        if next(failures):
            raise ConnectionError("database down")
        written.extend(batch)

    buffer = AuditBuffer(write)
    for n in range(3):
        buffer.add(n)  # fewer than a batch: the buffer's thread is not woken, only this test flushes
    settings.AUDIT_BATCH_SIZE = 2  # then two batches, so order across batches is what is tested
    assert buffer.flush() == 0 and buffer.depth() == 3  # nothing lost
    assert buffer.flush() == 3
    assert written == [0, 1, 2]


def test_a_full_buffer_drops_the_oldest_and_counts_them(settings):
    settings.AUDIT_FLUSH_INTERVAL = 3600
    settings.AUDIT_BUFFER_MAX = 3
    written = []
    before = metric("homepocket_audit_events_dropped_total")
    buffer = AuditBuffer(written.extend)
    for n in range(5):
        buffer.add(n)
    assert buffer.depth() == 3
    assert metric("homepocket_audit_events_dropped_total") == before + 2
    buffer.flush()
    assert written == [2, 3, 4]


@pytest.mark.e2e
@pytest.mark.parametrize("asgi_server", ["granian", "uvicorn"])
def test_a_clean_stop_writes_what_the_buffer_held(tmp_path, asgi_server):
    # A long interval: only the exit flush (the ASGI lifespan's shutdown) can write the event
    # before the server is gone. Two workers: uvicorn then runs the app in worker processes, as
    # granian always does.
    server = LiveServer(tmp_path, extra_env={"AUDIT_FLUSH_INTERVAL": "3600"}, server=asgi_server, workers=2).start()
    try:
        with HomePocketClient(server.url, timeout=10) as client:
            client.create_book(DeviceIdentity.new("buffered audit phone"))
        assert "audit chain intact: 0 events" in server.manage("audit", "verify")
        server.stop(signal.SIGTERM, keep_database=True)
        assert "audit chain intact: 1 events" in server.manage("audit", "verify")
    finally:
        server.stop()
