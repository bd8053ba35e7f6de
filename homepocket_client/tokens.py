"""Device tokens: short JWTs a device signs with its own Ed25519 key (alg EdDSA, RFC 8037).

The server verifies them with the public key it holds for the device, so there is no shared
secret and nothing to refresh: a device mints a new token whenever it wants one. Two kinds:

- a book token carries `book_id` and authenticates a registered device of that book;
- a registration token (book creation, pairing) has no `book_id`: the server refuses a book
  token there, so a stolen book token cannot be replayed to register another device.
"""

from __future__ import annotations

import time
import uuid

import jwt

from homepocket_client.keys import DeviceKey

ALGORITHM = "EdDSA"
# The server refuses tokens that live longer (DEVICE_TOKEN_MAX_LIFETIME_SECONDS); failing here
# gives the developer a clear ValueError instead of an INVALID_TOKEN from the server.
MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600


def device_token_mint(
    key: DeviceKey,
    *,
    device_id: uuid.UUID | str,
    book_id: uuid.UUID | str | None = None,
    lifetime_seconds: int = 3600,
    now: int | float | None = None,
) -> str:
    """A signed device token; a registration token when book_id is None.

    `now` (seconds since the epoch) is for tests and for devices that correct a skewed clock.
    """
    if not 0 < lifetime_seconds <= MAX_TOKEN_LIFETIME_SECONDS:
        raise ValueError(f"lifetime_seconds must be between 1 and {MAX_TOKEN_LIFETIME_SECONDS}, got {lifetime_seconds}")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "sub": _uuid_text(device_id, "device_id"),
        "iat": issued_at,
        "exp": issued_at + int(lifetime_seconds),
    }
    if book_id is not None:
        claims["book_id"] = _uuid_text(book_id, "book_id")
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM)


def _uuid_text(value: uuid.UUID | str, name: str) -> str:
    # The server parses both claims as UUIDs; a typo should fail here, not as a 401.
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"{name} must be a UUID, got {value!r}") from None
