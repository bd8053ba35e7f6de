"""The audit write buffer: requests hand their events over; a background thread writes them in batches.

Why: an audited request should not wait for the audit write (a chain-head lock, a hash, an
insert), and a flood of audited refusals (bad tokens, quota refusals) must not become one
transaction each. Events reach the buffer only when the caller's transaction commits, so work
that was rolled back is never recorded.

What a crash can lose: the events in the buffer (at most AUDIT_FLUSH_INTERVAL seconds of them,
and never more than AUDIT_BUFFER_MAX events), plus those of requests whose on-commit hook had
not run. A clean stop (SIGTERM, Ctrl-C) flushes the buffer at exit. When the database is down,
a batch goes back to the front of the buffer and is retried at the next interval, in order; past
AUDIT_BUFFER_MAX events the oldest are dropped, logged and counted, so memory stays bounded.
`AUDIT_FLUSH_INTERVAL=0` writes each event at commit in the caller's thread instead (tests).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection
from prometheus_client import Counter, Gauge

logger = logging.getLogger("homepocket.audit")

BUFFER_DEPTH = Gauge(
    "homepocket_audit_buffer_events", "Audit events waiting in this process's write buffer.", multiprocess_mode="livesum"
)
EVENTS_DROPPED = Counter("homepocket_audit_events_dropped_total", "Audit events dropped because the buffer was full.")


class AuditBuffer:
    def __init__(self, write: Callable[[list], None]):
        self._write = write
        self._pending: deque = deque()
        self._wakeup = threading.Condition()
        self._flushing = threading.Lock()  # one writer at a time keeps batches in order
        self._thread: threading.Thread | None = None
        self._stopping = False

    def add(self, event) -> None:
        """Queue an event (called when the recording transaction committed)."""
        if settings.AUDIT_FLUSH_INTERVAL <= 0:
            self._write([event])
            return
        with self._wakeup:
            self._pending.append(event)
            dropped = 0
            while len(self._pending) > settings.AUDIT_BUFFER_MAX:
                self._pending.popleft()
                dropped += 1
            BUFFER_DEPTH.set(len(self._pending))
            if self._thread is None or not self._thread.is_alive():
                self._start()
            if len(self._pending) >= settings.AUDIT_BATCH_SIZE:
                self._wakeup.notify()
        if dropped:
            EVENTS_DROPPED.inc(dropped)
            logger.error("audit buffer full: oldest events dropped", extra={"dropped": dropped})

    def depth(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Write everything queued now, in batches; returns how many were written."""
        written = 0
        with self._flushing:
            while True:
                with self._wakeup:
                    batch = [self._pending.popleft() for _ in range(min(settings.AUDIT_BATCH_SIZE, len(self._pending)))]
                if not batch:
                    break
                try:
                    self._write(batch)
                except Exception:
                    # Logged and counted by the writer; keep the batch, in order, for the next try.
                    with self._wakeup:
                        self._pending.extendleft(reversed(batch))
                        BUFFER_DEPTH.set(len(self._pending))
                    break
                written += len(batch)
                with self._wakeup:
                    BUFFER_DEPTH.set(len(self._pending))
        return written

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-buffer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            with self._wakeup:
                if len(self._pending) < settings.AUDIT_BATCH_SIZE:
                    self._wakeup.wait(settings.AUDIT_FLUSH_INTERVAL)
            close_old_connections()
            try:
                self.flush()
            finally:
                connection.close()  # back to the pool (or closed): an idle thread holds no connection

    def stop(self) -> None:
        """Stop the thread and flush what is left (at interpreter exit; tests restart it after)."""
        self._stopping = True
        with self._wakeup:
            self._wakeup.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None
        try:
            self.flush()
        except Exception:
            logger.exception("audit buffer: final flush failed", extra={"events": self.depth()})
        finally:
            self._stopping = False
