"""The sign path's API-key check, in memory: a verified key is trusted for SIGNING_API_KEY_CACHE_SECONDS.

Verification (apps.quotas.services.api_key_verify) reads the database; doing it per signature
would cost a query each. So a verified key is remembered by the SHA-256 of the presented string
for a short TTL. A revoked or rotated key is forgotten on every node as soon as the broadcast
(homepocket/redis_clients.py) carries the change; with Redis down, the TTL still bounds how long
it keeps signing (docs/signing.md). Refusals are not cached, so a key that becomes valid works at once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings

from apps.quotas.models import ApiKey
from apps.quotas.services import API_KEYS_CHANGED, api_key_verify
from homepocket.api.errors import Forbidden
from homepocket.redis_clients import broadcast

SIGNING_SCOPE = "signing"
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Caller:
    api_key_id: UUID
    api_key: ApiKey  # as verified: its rpm/daily/monthly are the quotas the sign path spends


_verified: dict[bytes, tuple[float, Caller]] = {}


def now() -> float:
    return time.monotonic()  # tests replace it to move past the TTL


def caller_from_api_key(api_key) -> Caller:
    """The caller an already-verified ApiKey row is, or FORBIDDEN without the signing scope."""
    if SIGNING_SCOPE not in api_key.scopes:
        raise Forbidden("This API key lacks the signing scope.", details={"required_scope": SIGNING_SCOPE})
    return Caller(api_key.pk, api_key)


async def caller_verify(presented: str) -> Caller:
    """The caller behind `Api-Key <presented>`, from memory when verified within the TTL."""
    digest = hashlib.sha256(presented.encode()).digest()
    t = now()
    hit = _verified.get(digest)
    if hit is not None and hit[0] > t:
        return hit[1]
    broadcast.start()  # hear revocations and rotations from every node (no-op once running)
    api_key = await sync_to_async(api_key_verify, thread_sensitive=False)(presented)
    caller = caller_from_api_key(api_key)
    if len(_verified) >= MAX_CACHED:
        _verified.clear()
    _verified[digest] = (t + settings.SIGNING_API_KEY_CACHE_SECONDS, caller)
    return caller


def callers_forget() -> None:
    _verified.clear()


def _keys_changed(data: dict) -> None:
    """Forget verified copies of keys revoked or rotated on any node."""
    changed = {str(key_id) for key_id in data.get("ids", [])}
    for digest, (_, caller) in list(_verified.items()):
        if str(caller.api_key_id) in changed:
            _verified.pop(digest, None)


broadcast.subscribe(API_KEYS_CHANGED, _keys_changed)
