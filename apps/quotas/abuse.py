"""Key-abuse signals: a rate far above an API key's or device's usual one, or many client addresses.

On the hot path a request only adds to this process's tallies (homepocket/tally.py,
`subject_tally`: a count and a small set of addresses per subject, no query, no round trip).
Every ABUSE_FLUSH_SECONDS each web process takes them here (`abuse_flush`), files them under
the current minute in the shared store (apps/quotas/abuse_store.py: Redis in the distributed
mode, this process's memory in the embedded one), with the addresses as keyed hashes, and
evaluates (`abuse_evaluate`):

- **fold** the minute that just ended, once per cluster (a store claim): judge its final counts,
  then move each active subject's usual rate towards the minute's count (an exponentially
  weighted average of its active minutes; a spike is folded capped at its threshold, so one
  attack does not teach the baseline that it is normal);
- **judge** the current minute, once per cluster and tick: a subject whose requests so far exceed
  max(ABUSE_RATE_FLOOR, ABUSE_RATE_FACTOR x usual rate), when it has a usual rate (at least
  ABUSE_BASELINE_MIN_MINUTES active minutes), is a `rate_spike`; one seen from more than
  ABUSE_IP_LIMIT distinct addresses over the last ABUSE_IP_WINDOW_MINUTES is `many_ips`.

A signal raises an AbuseFlag row (one open flag per subject and signal: a unique constraint, so
any number of nodes and ticks make one), an `abuse.flagged` audit event and
`homepocket_abuse_flags_total{signal,subject}`. With ABUSE_SUSPEND_API_KEYS on, a flagged API key
is suspended in the same transaction (refused with 403 API_KEY_SUSPENDED until an operator lifts
it). Devices are only flagged: suspending a phone would lock a family out of its own book, and
devices already have their operator action (sign out, revoke).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from redis.exceptions import RedisError

from apps.audit.hashing import id_hash
from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.quotas import metrics
from apps.quotas.abuse_store import Baseline, MemoryAbuseStore, RedisAbuseStore
from apps.quotas.models import AbuseAction, AbuseFlag, AbuseSignal, ApiKey, Subject
from apps.quotas.services import api_keys_changed_announce
from homepocket.process_loops import ProcessLoop
from homepocket.redis_clients import redis_configured, sync_client
from homepocket.tally import subjects_take

logger = logging.getLogger(__name__)

_store = None


def abuse_store():
    """This process's store: Redis when the `abuse` user has a URL (distributed), else memory."""
    global _store
    if _store is None:
        if redis_configured("abuse"):
            _store = RedisAbuseStore(sync_client("abuse"), settings.ABUSE_KEY_PREFIX)
        else:
            _store = MemoryAbuseStore()
    return _store


def _store_reset(*, setting, **kwargs):
    global _store
    if setting.startswith("ABUSE_") or setting.endswith("REDIS_URL"):
        _store = None


setting_changed.connect(_store_reset)


def address_hash(address: str) -> str:
    """A keyed hash of a client address (the audit key): distinct addresses stay distinct, none is readable."""
    return id_hash("ip", address)[:16]


# --- flush and evaluation (off the hot path) ----------------------------------------------------


def abuse_flush(*, at: float | None = None) -> list[AbuseFlag]:
    """File this process's tallies under the current minute, then evaluate; returns the flags raised."""
    at = time.time() if at is None else at
    minute = int(at // 60)
    counts, addresses = {}, {}
    for (kind, subject_id), (requests, seen) in subjects_take().items():
        subject = f"{kind}:{subject_id}"
        counts[subject] = requests
        if seen:
            addresses[subject] = {address_hash(address) for address in seen}
    try:
        if counts:
            abuse_store().add(minute, counts, addresses)
        return abuse_evaluate(at=at)
    except RedisError as exc:  # the store is down: these counts are dropped (never filed late, as a spike)
        metrics.ABUSE_STORE_ERRORS.inc()
        logger.warning("abuse signals: store unreachable", extra={"error_class": type(exc).__name__})
        return []


def _threshold(baseline: Baseline | None) -> float | None:
    """A minute's requests above this are a spike; None while the subject has no usual rate yet."""
    if baseline is None or baseline.minutes < settings.ABUSE_BASELINE_MIN_MINUTES:
        return None
    return max(float(settings.ABUSE_RATE_FLOOR), settings.ABUSE_RATE_FACTOR * baseline.rate)


def abuse_evaluate(*, at: float) -> list[AbuseFlag]:
    """Fold the minute that ended and judge the current one, each once per cluster."""
    store = abuse_store()
    minute = int(at // 60)
    raised = []
    if store.claim(f"fold:{minute - 1}", 3600):
        counts = store.minute_counts(minute - 1)
        baselines = store.baselines(list(counts))
        raised += _judge_rates(minute - 1, counts, baselines)
        weight = settings.ABUSE_BASELINE_WEIGHT
        folded = {}
        for subject, requests in counts.items():
            baseline = baselines.get(subject)
            if baseline is None:
                folded[subject] = Baseline(float(requests), 1)
                continue
            threshold = _threshold(baseline)
            sample = min(requests, threshold) if threshold is not None else requests
            folded[subject] = Baseline(baseline.rate + weight * (sample - baseline.rate), baseline.minutes + 1)
        store.baselines_save(folded)
    if store.claim(f"judge:{int(at // settings.ABUSE_FLUSH_SECONDS)}", 120):
        counts = store.minute_counts(minute)
        raised += _judge_rates(minute, counts, store.baselines(list(counts)))
        window = settings.ABUSE_IP_WINDOW_MINUTES
        for subject, distinct in store.distinct_addresses(list(counts), minute, window).items():
            if distinct <= settings.ABUSE_IP_LIMIT:
                continue
            resolved = _resolved_minute(subject, AbuseSignal.MANY_IPS, since_minute=minute - window + 1)
            if resolved is not None:  # count only the minutes after the operator's decision
                minutes = minute - resolved
                distinct = store.distinct_addresses([subject], minute, minutes)[subject] if minutes > 0 else 0
                if distinct <= settings.ABUSE_IP_LIMIT:
                    continue
            observed = {"distinct_ips": distinct, "window_minutes": window, "limit": settings.ABUSE_IP_LIMIT}
            raised.append(abuse_flag_raise(subject=subject, signal=AbuseSignal.MANY_IPS, observed=observed))
    return [flag for flag in raised if flag is not None]


def _resolved_minute(subject: str, signal: str, *, since_minute: int) -> int | None:
    """The minute of the latest resolution of this subject's `signal` flags at or after `since_minute`.

    A resolved flag (or a lifted suspension) covers the evidence it was raised on: the minutes up
    to its resolution are not judged again, or lifting a key during its window would suspend it
    again at the next tick. A query, but only for a subject already over a threshold.
    """
    kind, _, subject_id = subject.partition(":")
    since = datetime.fromtimestamp(since_minute * 60, tz=dt_timezone.utc)
    latest = (
        AbuseFlag.objects.filter(subject_kind=kind, subject_id=subject_id, signal=signal, resolved_at__gte=since)
        .aggregate(latest=Max("resolved_at"))["latest"]
    )  # fmt: skip
    return None if latest is None else int(latest.timestamp() // 60)


def _judge_rates(minute: int, counts: dict[str, int], baselines: dict[str, Baseline]) -> list[AbuseFlag | None]:
    raised = []
    for subject, requests in counts.items():
        threshold = _threshold(baselines.get(subject))
        if threshold is not None and requests > threshold:
            if _resolved_minute(subject, AbuseSignal.RATE_SPIKE, since_minute=minute) is not None:
                continue  # the operator decided on this minute already
            observed = {
                "minute": minute * 60, "requests": requests, "baseline": round(baselines[subject].rate, 2),
                "threshold": round(threshold, 2),
            }  # fmt: skip
            raised.append(abuse_flag_raise(subject=subject, signal=AbuseSignal.RATE_SPIKE, observed=observed))
    return raised


# --- flags and suspension (services) ------------------------------------------------------------


def abuse_flag_raise(*, subject: str, signal: str, observed: dict) -> AbuseFlag | None:
    """Record a signal for `kind:id` (and suspend an API key when the policy says so); None if one is open."""
    kind, _, subject_id = subject.partition(":")
    if kind not in (Subject.API_KEY, Subject.DEVICE):
        raise ValueError(f"not an abuse subject: {subject!r}")
    open_flags = AbuseFlag.objects.filter(subject_kind=kind, subject_id=subject_id, signal=signal, resolved_at__isnull=True)
    if open_flags.exists():
        return None  # the usual case while a pattern lasts: no failed insert per tick (the constraint decides races)
    try:
        with transaction.atomic():
            flag = AbuseFlag.objects.create(subject_kind=kind, subject_id=subject_id, signal=signal, observed=observed)
            if kind == Subject.API_KEY and settings.ABUSE_SUSPEND_API_KEYS and _api_key_suspend(subject_id, flag):
                flag.action = AbuseAction.SUSPENDED
                flag.save(update_fields=["action"])
            audit_event_record(
                event_type=EventType.ABUSE_FLAGGED, outcome=Outcome.FAILURE,
                api_key_id=subject_id if kind == Subject.API_KEY else None,
                actor_device_id=subject_id if kind == Subject.DEVICE else None,
                target=f"abuse_flag:{flag.pk}", details={"signal": signal, "observed": observed, "action": flag.action},
            )  # fmt: skip
    except IntegrityError:
        return None  # this subject already has an open flag for this signal
    metrics.ABUSE_FLAGS.labels(signal, kind).inc()
    logger.warning("abuse signal", extra={"signal": signal, "subject_kind": kind, "action": flag.action})
    return flag


def _api_key_suspend(key_id: str, flag: AbuseFlag) -> bool:
    """Suspend an active key (inside the flag's transaction); every node forgets its verified copy."""
    if not ApiKey.objects.filter(pk=key_id, revoked_at__isnull=True, suspended_at__isnull=True).update(suspended_at=timezone.now()):
        return False
    audit_event_record(
        event_type=EventType.API_KEY_SUSPENDED, outcome=Outcome.SUCCESS, api_key_id=key_id,
        target=f"abuse_flag:{flag.pk}", details={"signal": flag.signal},
    )  # fmt: skip
    transaction.on_commit(lambda: api_keys_changed_announce([key_id]))
    return True


def abuse_flags_resolve(*, flag_ids: list, admin_user_id=None, lift: bool = False) -> int:
    """Mark open flags resolved (and with `lift`, lift the suspensions they caused); returns how many."""
    with transaction.atomic():
        flags = list(AbuseFlag.objects.select_for_update().filter(pk__in=flag_ids, resolved_at__isnull=True))
        AbuseFlag.objects.filter(pk__in=[flag.pk for flag in flags]).update(
            resolved_at=timezone.now(), resolved_by=str(admin_user_id or "")
        )
        for flag in flags:
            audit_event_record(
                event_type=EventType.ABUSE_RESOLVED, outcome=Outcome.SUCCESS, target=f"abuse_flag:{flag.pk}",
                details={"signal": flag.signal, "subject_kind": flag.subject_kind, "admin_user_id": admin_user_id},
            )  # fmt: skip
        if lift:
            suspended = {flag.subject_id for flag in flags if flag.action == AbuseAction.SUSPENDED}
            api_keys_suspension_lift(key_ids=sorted(suspended), admin_user_id=admin_user_id)
    return len(flags)


def api_keys_suspension_lift(*, key_ids: list, admin_user_id=None) -> int:
    """Lift the suspension of these keys (they work again at once) and resolve their open flags."""
    with transaction.atomic():
        lifted = [
            str(pk) for pk in ApiKey.objects.select_for_update().filter(pk__in=key_ids, suspended_at__isnull=False).values_list("pk", flat=True)
        ]
        ApiKey.objects.filter(pk__in=lifted).update(suspended_at=None)
        for key_id in lifted:
            audit_event_record(
                event_type=EventType.API_KEY_SUSPENSION_LIFTED, outcome=Outcome.SUCCESS, api_key_id=key_id,
                details={"by": "admin", "admin_user_id": admin_user_id} if admin_user_id else {"by": "command"},
            )  # fmt: skip
        AbuseFlag.objects.filter(subject_kind=Subject.API_KEY, subject_id__in=lifted, resolved_at__isnull=True).update(
            resolved_at=timezone.now(), resolved_by=str(admin_user_id or "")
        )
        if lifted:
            transaction.on_commit(lambda: api_keys_changed_announce(lifted))
    return len(lifted)


# --- this process's loop --------------------------------------------------------------------------


_loop = ProcessLoop("abuse-signals")


def abuse_start() -> None:
    """Start this process's abuse flush from its event loop (the ASGI lifespan startup); once per process."""
    _loop.start_periodic(abuse_flush, every=lambda: settings.ABUSE_FLUSH_SECONDS, what="abuse signals")


def abuse_stop() -> None:
    """End the loop with its last flush (the lifespan's shutdown, homepocket/lifespan.py)."""
    _loop.stop()
