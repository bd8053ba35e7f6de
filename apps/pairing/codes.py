"""Pairing codes in the cache (Redis in the distributed mode, local memory in the embedded one).

The one module that knows these cache keys (CONVENTIONS 10):
- `pairing:code:<code>`: the live code and who made it; consuming it is `cache.delete`, which both
  backends make atomic (Redis DEL, the local cache's lock), so of two devices racing with the
  right code exactly one sees True;
- `pairing:tomb:<code>`: a tombstone kept 15 minutes past expiry, to tell an expired code
  (SHORT_CODE_EXPIRED) from a wrong or used one (INVALID_SHORT_CODE);
- `pairing:done:<code>`: the joiner's key, waiting for the initiator's exchange, claimed once;
- `pairing:fail:<subject>:<window>`: failed verifies per device and per client IP, in fixed
  10-minute windows.
Expiry is decided by the stored `expires_at` against now(), not only by the cache's TTL, so
tests can move time without sleeping and Redis's clock does not matter.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass

from django.core.cache import cache

CODE_TTL_SECONDS = 300
TOMBSTONE_SECONDS = 900
FAILURE_WINDOW_SECONDS = 600
_GRACE_SECONDS = 5  # the cache keeps a code a little past expires_at; now() decides


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class LiveCode:
    book_id: str
    initiator_device_id: str
    initiator_public_key: str
    expires_at: float


@dataclass(frozen=True)
class Completion:
    initiator_device_id: str
    joiner_device_id: str
    joiner_public_key: str


def _code_key(code: str) -> str:
    return f"pairing:code:{code}"


def _tomb_key(code: str) -> str:
    return f"pairing:tomb:{code}"


def _done_key(code: str) -> str:
    return f"pairing:done:{code}"


def code_create(*, book_id: str, device_id: str, public_key: str) -> tuple[str, LiveCode]:
    """Draw a code unused among live ones (cache.add refuses a taken one) and store it."""
    live = LiveCode(book_id, device_id, public_key, expires_at=now() + CODE_TTL_SECONDS)
    for _ in range(100):
        code = f"{secrets.randbelow(1_000_000):06d}"
        if cache.add(_code_key(code), asdict(live), CODE_TTL_SECONDS + _GRACE_SECONDS):
            cache.set(_tomb_key(code), {"state": "live", "expires_at": live.expires_at}, CODE_TTL_SECONDS + TOMBSTONE_SECONDS)
            return code, live
    raise RuntimeError("no free pairing code after 100 draws")  # a million codes live: not reachable


def code_get(code: str) -> LiveCode | None:
    """The live code, or None when unknown, used or past expires_at."""
    raw = cache.get(_code_key(code))
    if raw is None:
        return None
    live = LiveCode(**raw)
    if live.expires_at <= now():
        return None
    return live


def code_expired(code: str) -> bool:
    """True when the code existed, was never used and its five minutes have passed."""
    tomb = cache.get(_tomb_key(code))
    return bool(tomb) and tomb["state"] == "live" and tomb["expires_at"] <= now()


def code_joining(code: str) -> bool:
    """True between a verify's claim and its completion: the code is gone but was never used up."""
    tomb = cache.get(_tomb_key(code))
    return bool(tomb) and tomb["state"] == "live" and tomb["expires_at"] > now()


def code_claim(code: str) -> bool:
    """Consume the code; True for exactly one caller."""
    return bool(cache.delete(_code_key(code)))


def code_restore(code: str, live: LiveCode) -> None:
    """Put a claimed code back when the join failed after the claim (nothing may change)."""
    remaining = int(live.expires_at - now())
    if remaining > 0:
        cache.add(_code_key(code), asdict(live), remaining + _GRACE_SECONDS)


def code_complete(code: str, completion: Completion) -> None:
    cache.set(_tomb_key(code), {"state": "used", "expires_at": 0}, CODE_TTL_SECONDS + TOMBSTONE_SECONDS)
    cache.set(_done_key(code), asdict(completion), CODE_TTL_SECONDS)


def completion_get(code: str) -> Completion | None:
    raw = cache.get(_done_key(code))
    return Completion(**raw) if raw else None


def completion_claim(code: str) -> bool:
    return bool(cache.delete(_done_key(code)))


def failures_window() -> tuple[int, int]:
    """(window index, seconds until the window ends)."""
    current = now()
    window = int(current // FAILURE_WINDOW_SECONDS)
    return window, max(1, int((window + 1) * FAILURE_WINDOW_SECONDS - current))


def failures_count(subject: str) -> int:
    window, _ = failures_window()
    return int(cache.get(f"pairing:fail:{subject}:{window}", 0))


def failure_record(subject: str) -> None:
    window, _ = failures_window()
    key = f"pairing:fail:{subject}:{window}"
    cache.add(key, 0, FAILURE_WINDOW_SECONDS + _GRACE_SECONDS)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr: this failure starts the window
        cache.add(key, 1, FAILURE_WINDOW_SECONDS + _GRACE_SECONDS)
