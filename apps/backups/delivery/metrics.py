"""Share delivery metrics (Prometheus names per CONVENTIONS 16).

Deliveries by state are counted as transitions into each state: a counter sums correctly over
processes and nodes, where a per-process gauge of "how many are PENDING now" could not. The
current count per state is one query away (`manage.py share_delivery list --state …`).
"""

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "homepocket_share_deliveries_total",
    "Share deliveries that entered a state (PENDING on deposit or retry, DELIVERED, CONFIRMED, FAILED).",
    ["status"],
)
RETRIES = Counter(
    "homepocket_share_delivery_retries_total",
    "Failed delivery attempts counted as a retry, by reason (not_received, hash_mismatch).",
    ["reason"],
)
REQUEST_SECONDS = Histogram(
    "homepocket_share_delivery_request_seconds",
    "Time to answer a share request (unwrap, ECIES, sign, record), by outcome.",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
