"""Pairing metrics. Alert on a spike of invalid verifies: a guessing attack spread over many
devices and addresses passes every per-subject limit but shows here (docs/pairing.md)."""

from prometheus_client import Counter

PAIRING_VERIFY_FAILURES = Counter(
    "homepocket_pairing_verify_failures_total",
    "Pairing verifies that failed, by reason (invalid, expired, locked_out, lost_race).",
    ["reason"],
)
