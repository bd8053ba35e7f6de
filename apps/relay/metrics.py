"""Prometheus metrics of the relay (names per CONVENTIONS 16). Counted per frame, not per delivery call."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OPERATIONS = Counter("homepocket_relay_operations_total", "CRDT operations accepted for relay (socket or HTTP).")
DELIVERIES = Counter("homepocket_relay_deliveries_total", "Frames queued to a local socket of another device.")
SLOW_READER_CLOSES = Counter(
    "homepocket_relay_slow_reader_closes_total", "Sockets closed with 4408 because their send buffer overflowed."
)
REFUSALS = Counter("homepocket_relay_refusals_total", "Sockets refused or closed by the relay, by close code.", ["code"])
SOCKETS = Gauge("homepocket_relay_sockets", "Relay sockets open on this node.", multiprocess_mode="livesum")
