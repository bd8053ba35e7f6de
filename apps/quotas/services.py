"""The quotas app's public face: API keys, and the rate-limit check every limited edge calls."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.quotas import limiter, metrics
from apps.quotas.limiter import CheckResult, Limit, MemoryStore, StoreUnavailable
from apps.quotas.models import ApiKey, FailMode, Plan, Policy, QuotaNotification, Subject, Window
from apps.quotas.policies import POLICIES_CHANGED, PolicyRule, policies_forget, policy_rule, policy_rules_for
from homepocket.api.errors import ApplicationError

logger = logging.getLogger(__name__)

KEY_PREFIX = "hp_"
LAST_USED_INTERVAL = timedelta(minutes=1)


class ApiKeyRefused(ApplicationError):
    code = "INVALID_TOKEN"
    default_message = "Invalid API key."

    def __init__(self, reason: str):
        super().__init__(details={"reason": reason}, headers={"WWW-Authenticate": "Api-Key"})


class ApiKeySuspended(ApplicationError):
    code = "API_KEY_SUSPENDED"
    default_message = "This API key is suspended after an abuse signal; an operator can lift the suspension."


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, scopes: list[str] | None = None, rpm=None, daily=None, monthly=None) -> tuple[ApiKey, str]:
    """Create a key; returns (row, the key in clear). The clear key is never stored or shown again."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name, prefix=prefix, secret_hash=_secret_hash(secret), scopes=sorted(set(scopes or [])),
        rpm=rpm, daily=daily, monthly=monthly,
    )  # fmt: skip
    audit_event_record(
        event_type=EventType.API_KEY_CREATED, outcome=Outcome.SUCCESS, api_key_id=key.pk,
        details={"scopes": key.scopes, "rpm": rpm, "daily": daily, "monthly": monthly},
    )  # fmt: skip
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def api_keys_revoke(*, key_ids: list, admin_user_id=None) -> int:
    """Revoke keys: refused from now on. Returns how many were active."""
    with transaction.atomic():
        active = list(ApiKey.objects.select_for_update().filter(pk__in=key_ids, revoked_at__isnull=True).values_list("pk", flat=True))
        count = ApiKey.objects.filter(pk__in=active, revoked_at__isnull=True).update(revoked_at=timezone.now())
        for key_id in active:
            audit_event_record(
                event_type=EventType.API_KEY_REVOKED, outcome=Outcome.SUCCESS, api_key_id=key_id,
                details={"by": "admin", "admin_user_id": admin_user_id} if admin_user_id else {"by": "command"},
            )  # fmt: skip
        if active:
            transaction.on_commit(lambda: api_keys_changed_announce([str(pk) for pk in active]))
    return count


API_KEYS_CHANGED = "api_keys.changed"  # broadcast topic: these keys were revoked, rotated, suspended or lifted


def api_keys_changed_announce(key_ids: list[str]) -> None:
    """Tell every node that these keys changed, so that no node keeps trusting a verified copy."""
    from homepocket.redis_clients import broadcast

    broadcast.publish(API_KEYS_CHANGED, {"ids": key_ids})


def api_key_rotate(*, key_id, admin_user_id=None) -> tuple[ApiKey, str] | None:
    """Bump a key's tokens_valid_after: a new secret (returned in clear, once); the old one is refused from now on.

    The key keeps its id, name, scopes, limits and counts. None when no active key has this id.
    Every node refuses the old secret at once: the sign path's verified-key memory is told too.
    """
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=key_id, revoked_at__isnull=True).first()
        if key is None:
            return None
        key.retired_secret_hash, key.secret_hash = key.secret_hash, _secret_hash(secret)
        key.tokens_valid_after = timezone.now()
        key.save(update_fields=["retired_secret_hash", "secret_hash", "tokens_valid_after"])
        audit_event_record(
            event_type=EventType.API_KEY_ROTATED, outcome=Outcome.SUCCESS, api_key_id=key.pk,
            details={"by": "admin", "admin_user_id": admin_user_id} if admin_user_id else {"by": "command"},
        )  # fmt: skip
        transaction.on_commit(lambda: api_keys_changed_announce([str(key.pk)]))
    return key, f"{KEY_PREFIX}{key.prefix}_{secret}"


def api_key_verify(presented: str) -> ApiKey:
    """The active key this string is, or ApiKeyRefused; compared in constant time."""
    if not presented.startswith(KEY_PREFIX) or presented.count("_") < 2:
        raise ApiKeyRefused("malformed")
    prefix, _, secret = presented[len(KEY_PREFIX) :].partition("_")
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is not None and key.retired_secret_hash and hmac.compare_digest(key.retired_secret_hash, _secret_hash(secret)):
        raise ApiKeyRefused("token_revoked")  # the key was rotated: this string was issued before
    if key is None or not hmac.compare_digest(key.secret_hash, _secret_hash(secret)):
        raise ApiKeyRefused("unknown_key")
    if key.is_revoked:
        raise ApiKeyRefused("revoked")
    if key.suspended_at is not None:
        raise ApiKeySuspended()  # before last_used_at: a refused request changes nothing
    now = timezone.now()
    if key.last_used_at is None or key.last_used_at < now - LAST_USED_INTERVAL:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)  # at most once a minute
    return key


# --- rate limits and quotas -------------------------------------------------------------------


class RateLimitExceeded(ApplicationError):
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Too many requests."


class RateLimitStoreDown(ApplicationError):
    code = "RETRY_LATER"
    default_message = "The rate-limit store is unreachable and this endpoint fails closed; retry later."


@dataclass(frozen=True)
class QuotaSubjects:
    """Who a request counts against: whatever of these the edge knows."""

    device_id: uuid.UUID | None = None
    book_id: uuid.UUID | None = None
    plan: str = Plan.FREE  # the book's plan; Plan.SERVICE for API keys
    api_key: ApiKey | None = None
    ip: str | None = None

    def subject_id(self, kind: str) -> str | None:
        value = {
            Subject.DEVICE: self.device_id, Subject.BOOK: self.book_id, Subject.IP: self.ip,
            Subject.API_KEY: self.api_key.pk if self.api_key else None,
        }[kind]  # fmt: skip
        return None if value in (None, "") else str(value)

    def kinds(self) -> set[str]:
        return {kind for kind in Subject.values if self.subject_id(kind) is not None}


@dataclass(frozen=True)
class AppliedLimit:
    rule: PolicyRule
    limit: Limit
    subject_label: str  # "book:<id>", for notifications; never an address


_API_KEY_OVERRIDES = {Window.MINUTE: "rpm", Window.DAY: "daily", Window.MONTH: "monthly"}


def effective_limit(rule: PolicyRule, subjects: QuotaSubjects) -> int | None:
    """The rule's limit for these subjects: an API key's own rpm/daily/monthly replaces the policy's."""
    if rule.subject == Subject.API_KEY and subjects.api_key is not None:
        own = getattr(subjects.api_key, _API_KEY_OVERRIDES.get(rule.window, ""), None)
        if own is not None:
            return own
    return rule.limit


def _applied(rules: list[PolicyRule], subjects: QuotaSubjects, at: float) -> list[AppliedLimit]:
    applied = []
    for rule in rules:
        subject_id = subjects.subject_id(rule.subject)
        limit = effective_limit(rule, subjects)
        if subject_id is None or limit is None:
            continue  # no such subject on this request, or unlimited
        key = f"{rule.scope}:{rule.subject}:{subject_id}"
        label = "" if rule.subject == Subject.IP else f"{rule.subject}:{subject_id}"
        applied.append(AppliedLimit(rule, limiter.window_limit(key=key, limit=limit, window=rule.window, at=at), label))
    return applied


_store_lock = threading.Lock()
_store = None


def limiter_store():
    """The counter store of this process: Redis when RATELIMIT_REDIS_URL is set, else memory."""
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                from apps.quotas.store_redis import RedisStore

                _store = RedisStore() if settings.RATELIMIT_REDIS_URL else MemoryStore()
    return _store


def _store_reset(*, setting, **kwargs):
    global _store
    if setting.startswith("RATELIMIT_"):
        _store = None
        policies_forget()


setting_changed.connect(_store_reset)


def _check(applied: list[AppliedLimit], *, at: float, cost: int) -> CheckResult:
    started = time.perf_counter()
    try:
        return limiter_store().check([item.limit for item in applied], now_ms=int(at * 1000), cost=cost)
    finally:
        metrics.RATELIMIT_CHECK_SECONDS.observe(time.perf_counter() - started)


def rate_limit_headers(*, limit: int, remaining: int, reset_ms: int) -> dict[str, str]:
    """The X-RateLimit-* of one limit (docs/api.md, "Rate limits and quotas")."""
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(math.ceil(reset_ms / 1000)),
    }


def quota_consume(*, scopes: list[str] | tuple[str, ...], subjects: QuotaSubjects) -> dict[str, str]:
    """Count one request against every policy of these scopes, all or nothing.

    Returns the X-RateLimit-* headers to send (empty when nothing limits this request or the
    store is down and the policies fail open); raises RateLimitExceeded (429) or, when the store
    is down and a policy fails closed, RateLimitStoreDown (503).
    """
    granted = quota_units_take(scopes=scopes, subjects=subjects, units=1)
    return granted.headers() if granted else {}


@dataclass(frozen=True)
class QuotaGrant:
    units: int  # how many requests this grant covers (1, or a lease's block)
    limit: int  # the limit closest to refusing (least remaining), what it had left after the grant,
    remaining: int  # and when a request is counted off it again
    reset_ms: int

    def headers(self, *, remaining: int | None = None) -> dict[str, str]:
        left = self.remaining if remaining is None else remaining
        return rate_limit_headers(limit=self.limit, remaining=left, reset_ms=self.reset_ms)


def quota_units_take(*, scopes, subjects: QuotaSubjects, units: int) -> QuotaGrant | None:
    """Take up to `units` (at least one) from every policy of these scopes at once; None if nothing limits.

    Raises like quota_consume. apps/quotas/leases.py takes blocks this way for hot paths.
    """
    rules = [rule for scope in scopes if (rule := policy_rule(scope, subjects.plan)) is not None]
    at = limiter.now()
    applied = _applied(rules, subjects, at)
    if not applied:
        return None
    try:
        result = _check(applied, at=at, cost=units)
    except StoreUnavailable:
        _store_down(applied)
        return None
    if not result.allowed:
        _refuse(applied[result.refused_index], result, subjects, at)
    for item, count in zip(applied, result.counts):
        metrics.RATELIMIT_DECISIONS.labels(item.rule.scope, "allowed").inc(result.granted)
        threshold = _warning_threshold(item.limit.limit)
        if not item.limit.sliding and item.subject_label and count.used - result.granted < threshold <= count.used:
            _quota_warning_record(item, count.used)
    closest = min(range(len(applied)), key=lambda i: (applied[i].limit.limit - result.counts[i].used, applied[i].limit.limit))
    limit, count = applied[closest].limit.limit, result.counts[closest]
    return QuotaGrant(result.granted, limit, limit - count.used, count.reset_ms)


def _store_down(applied: list[AppliedLimit]) -> dict[str, str]:
    metrics.RATELIMIT_STORE_ERRORS.inc()
    closed = [item.rule.scope for item in applied if item.rule.fail_mode == FailMode.CLOSED]
    for item in applied:
        metrics.RATELIMIT_DECISIONS.labels(item.rule.scope, "fail_closed" if closed else "fail_open").inc()
    if closed:
        retry = max(1, math.ceil(settings.RATELIMIT_STORE_RETRY))
        raise RateLimitStoreDown(details={"policies": sorted(set(closed))}, headers={"Retry-After": str(retry)})
    return {}


def _refuse(item: AppliedLimit, result: CheckResult, subjects: QuotaSubjects, at: float):
    metrics.RATELIMIT_DECISIONS.labels(item.rule.scope, "refused").inc()
    count = result.counts[result.refused_index]
    retry_after = max(1, math.ceil(count.reset_ms / 1000 - at))
    if result.first_refusal:
        audit_event_record(
            event_type=EventType.QUOTA_EXCEEDED, outcome=Outcome.FAILURE,
            actor_device_id=subjects.device_id, book_id=subjects.book_id,
            api_key_id=subjects.api_key.pk if subjects.api_key else None,
            target=f"policy:{item.rule.scope}",
            details={"plan": item.rule.plan, "subject": item.rule.subject, "limit": item.limit.limit, "window": item.rule.window},
        )  # fmt: skip
    raise RateLimitExceeded(
        f"Rate limit exceeded for {item.rule.scope}: {item.limit.limit} per {item.rule.window}.",
        details={
            "policy": item.rule.scope, "limit": item.limit.limit, "window": item.limit.window_ms // 1000,
            "retry_after": retry_after,
        },
        headers={
            "Retry-After": str(retry_after),
            **rate_limit_headers(limit=item.limit.limit, remaining=0, reset_ms=count.reset_ms),
        },
    )  # fmt: skip


def _warning_threshold(limit: int) -> int:
    return max(1, math.ceil(limit * settings.QUOTA_WARNING_RATIO))


def _quota_warning_record(item: AppliedLimit, used: int) -> None:
    """Record that a subject passed the warning share; the unique constraint keeps it once per window."""
    window_start = datetime.fromtimestamp((item.limit.calendar_end_ms - item.limit.window_ms) / 1000, tz=dt_timezone.utc)
    try:
        with transaction.atomic():
            QuotaNotification.objects.create(
                scope=item.rule.scope, plan=item.rule.plan, subject=item.subject_label, window_start=window_start,
                used=used, limit=item.limit.limit,
            )  # fmt: skip
    except IntegrityError:
        return  # already recorded for this window (a limit edited mid-window can cross twice)
    except DatabaseError:
        logger.warning("quota warning not recorded", extra={"scope": item.rule.scope}, exc_info=True)
        return
    metrics.QUOTA_WARNINGS.labels(item.rule.scope).inc()


@dataclass(frozen=True)
class QuotaUsage:
    scope: str
    subject: str
    window: str
    limit: int | None
    used: int | None
    remaining: int | None
    reset: int | None
    fail_mode: str


def quota_usage(*, subjects: QuotaSubjects) -> list[QuotaUsage]:
    """Every policy that counts this caller's device, book or key, with what is used now; nothing is consumed.

    Per-address limits are left out: an address is shared (NAT, carrier) and not the caller's own.
    """
    at = limiter.now()
    rules = policy_rules_for(subjects.plan, subjects.kinds() - {Subject.IP})
    applied = _applied(rules, subjects, at)
    try:
        result = _check(applied, at=at, cost=0) if applied else None
    except StoreUnavailable as exc:
        raise RateLimitStoreDown("The rate-limit store is unreachable; usage cannot be read now.", headers={"Retry-After": "1"}) from exc
    counted = {item.rule.scope: (item, result.counts[i]) for i, item in enumerate(applied)}
    usage = []
    for rule in rules:
        if rule.scope in counted:
            item, count = counted[rule.scope]
            usage.append(QuotaUsage(
                rule.scope, rule.subject, rule.window, item.limit.limit, count.used,
                max(0, item.limit.limit - count.used), math.ceil(count.reset_ms / 1000), rule.fail_mode,
            ))  # fmt: skip
        else:
            usage.append(QuotaUsage(rule.scope, rule.subject, rule.window, None, None, None, None, rule.fail_mode))
    return usage


def quota_notifications(*, subjects: QuotaSubjects, since: datetime) -> list[QuotaNotification]:
    """This caller's warnings recorded since a time, newest first."""
    labels = [f"{kind}:{subjects.subject_id(kind)}" for kind in subjects.kinds() if kind != Subject.IP]
    return list(QuotaNotification.objects.filter(subject__in=labels, created_at__gte=since))


def policy_update(*, policy: Policy, changed_fields: list[str], admin_user_id=None) -> Policy:
    """Save an operator's edit of a policy and audit it; every node applies it within RATELIMIT_POLICY_TTL."""
    with transaction.atomic():
        policy.save()
        audit_event_record(
            event_type=EventType.POLICY_CHANGED, outcome=Outcome.SUCCESS, target=f"policy:{policy.scope}:{policy.plan}",
            details={
                "changed": sorted(changed_fields), "limit": policy.limit, "window": policy.window,
                "fail_mode": policy.fail_mode, "admin_user_id": admin_user_id,
            },
        )  # fmt: skip
        transaction.on_commit(policies_changed_announce)
    policies_forget()
    return policy


def policies_changed_announce() -> None:
    """Every node drops its copy of the policies at once (the TTL still bounds it when Redis is down)."""
    from homepocket.redis_clients import broadcast

    broadcast.publish(POLICIES_CHANGED, {})
