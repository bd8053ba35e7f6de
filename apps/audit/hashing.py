"""Keyed hashes of ids and the row hashes of the chain."""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import lru_cache

from django.conf import settings

GENESIS = "0" * 64


@lru_cache(maxsize=1)
def _key() -> bytes:
    return settings.AUDIT_HASH_KEY.encode()


def id_hash(kind: str, raw_id) -> str:
    """HMAC-SHA256 of `kind:id` under the audit key; '' for no id."""
    if raw_id in (None, ""):
        return ""
    return hmac.new(_key(), f"{kind}:{raw_id}".encode(), hashlib.sha256).hexdigest()


def row_hash(prev_hash: str, content: dict) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def row_content(event) -> dict:
    """What the chain covers: every column but the id and the hashes themselves."""
    return {
        "created_at": event.created_at.isoformat(),
        "event_type": event.event_type,
        "outcome": event.outcome,
        "actor_device": event.actor_device,
        "book": event.book,
        "api_key_id": event.api_key_id,
        "target": event.target,
        "details": event.details,
    }
