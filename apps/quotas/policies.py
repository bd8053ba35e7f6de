"""Policies as every node sees them: the database's rows, re-read at most RATELIMIT_POLICY_TTL seconds old.

A short-lived in-process copy: one indexed query per node every few seconds costs nothing and
bounds how stale a node can be (the TTL, 5 s by default) whatever happened to Redis. An edit is
also announced on the broadcast (`quota_policies.changed`, homepocket/redis_clients.py), which
drops every node's copy at once; the TTL is the bound when that announcement is lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from apps.quotas.models import Plan, Policy


@dataclass(frozen=True)
class PolicyRule:
    scope: str
    plan: str
    subject: str
    limit: int | None
    window: str
    fail_mode: str


POLICIES_CHANGED = "quota_policies.changed"  # broadcast topic: a policy was edited

_lock = threading.Lock()
_rules: dict[tuple[str, str], PolicyRule] = {}
_loaded_at = float("-inf")


def _load() -> dict[tuple[str, str], PolicyRule]:
    global _rules, _loaded_at
    if time.monotonic() - _loaded_at < settings.RATELIMIT_POLICY_TTL:
        return _rules
    with _lock:
        if time.monotonic() - _loaded_at >= settings.RATELIMIT_POLICY_TTL:
            rows = Policy.objects.values_list("scope", "plan", "subject", "limit", "window", "fail_mode")
            _rules = {(row[0], row[1]): PolicyRule(*row) for row in rows}
            _loaded_at = time.monotonic()
    return _rules


def policies_forget() -> None:
    """Drop this process's copy (after an edit here, and between tests)."""
    global _loaded_at
    _loaded_at = float("-inf")


def policy_rule(scope: str, plan: str) -> PolicyRule | None:
    """The rule for a scope and plan; a plan without its own row falls back to the free plan's."""
    rules = _load()
    return rules.get((scope, plan)) or rules.get((scope, Plan.FREE))


def policy_rules_for(plan: str, subjects: set[str]) -> list[PolicyRule]:
    """The rule of every scope that counts one of these subject kinds, for this plan."""
    scopes = sorted({scope for scope, _ in _load()})
    rules = [policy_rule(scope, plan) for scope in scopes]
    return [rule for rule in rules if rule is not None and rule.subject in subjects]


def _announced(data: dict) -> None:
    policies_forget()


def _subscribe() -> None:
    from homepocket.redis_clients import broadcast

    broadcast.subscribe(POLICIES_CHANGED, _announced)


_subscribe()
