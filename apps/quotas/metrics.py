"""Limiter metrics: decisions per policy, store failures, and what a check costs."""

from prometheus_client import Counter, Histogram

RATELIMIT_DECISIONS = Counter(
    "homepocket_ratelimit_decisions_total",
    "Rate-limit checks by policy scope and decision (allowed, refused, fail_open, fail_closed).",
    ["scope", "decision"],
)
RATELIMIT_STORE_ERRORS = Counter(
    "homepocket_ratelimit_store_errors_total",
    "Checks that could not reach the counter store (the policies' fail modes applied).",
)
RATELIMIT_CHECK_SECONDS = Histogram(
    "homepocket_ratelimit_check_seconds",
    "Time of one check-and-consume in the counter store.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
)
QUOTA_WARNINGS = Counter(
    "homepocket_quota_warnings_total",
    "Subjects that passed the warning share of a daily or monthly quota, by scope.",
    ["scope"],
)
ABUSE_FLAGS = Counter(
    "homepocket_abuse_flags_total",
    "Abuse flags raised (apps/quotas/abuse.py), by signal (rate_spike, many_ips) and subject (api_key, device).",
    ["signal", "subject"],
)
ABUSE_STORE_ERRORS = Counter(
    "homepocket_abuse_store_errors_total",
    "Abuse-signal flushes that could not reach Redis (their counts were dropped).",
)
