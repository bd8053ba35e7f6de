"""Device tokens: JWTs a device signs with its own Ed25519 key (EdDSA), verified with the key we hold.

One verifier for every edge: DRF (authentication.py) and, later, the WebSocket consumer. What it
refuses and why (docs/api.md, "Device auth"):
- any alg but EdDSA: `none`, HS* (a public key used as an HMAC secret) and RS*/ES* are never tried;
- a `jwk`, `jku`, `x5u` or `x5c` header: the key comes from our database, never from the token;
- missing `sub`, `book_id`, `iat` or `exp`; an `iat` in the future; a lifetime over 24 h;
- an unknown or revoked device, a signature by any key but the device's registered one;
- a token whose `iat` is before the device's `tokens_valid_after` (its tokens were revoked).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings

from apps.pairing.device_cache import device_get
from apps.pairing.models import Device
from homepocket.api.errors import ApplicationError, Forbidden

ALGORITHM = "EdDSA"
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c")
_CHALLENGE = 'Bearer error="invalid_token"'


class TokenRefused(ApplicationError):
    code = "INVALID_TOKEN"
    default_message = "Invalid token."

    def __init__(self, reason: str, message: str | None = None, **details: Any):
        super().__init__(
            message or f"Token refused: {reason.replace('_', ' ')}.", details={"reason": reason, **details},
            headers={"WWW-Authenticate": _CHALLENGE},
        )  # fmt: skip


class TokenForbidden(Forbidden):
    def __init__(self, reason: str, message: str):
        super().__init__(message, details={"reason": reason})


@dataclass(frozen=True)
class VerifiedDevice:
    """The authenticated principal of a request (request.user in DRF)."""

    device: Device
    claims: dict[str, Any]

    is_authenticated = True

    @property
    def device_id(self) -> uuid.UUID:
        return self.device.id

    @property
    def book_id(self) -> uuid.UUID:
        return self.device.book_id


def bearer_token_from_header(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None when there is no header."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("malformed_header", "The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def device_token_verify(token: str) -> VerifiedDevice:
    """Verify a book-bound device token and return its device; raise TokenRefused/TokenForbidden."""
    device = device_token_device_load(device_token_subject(token))
    return VerifiedDevice(device=device, claims=device_token_check(token, device))


def device_token_subject(token: str) -> uuid.UUID:
    """The device a token names in `sub`, before anything is verified: whose key to check it with."""
    return _uuid_claim(_unverified_claims(token), "sub")


def device_token_device_load(device_id: uuid.UUID) -> Device:
    """The device (with its book) a token names, or TokenRefused("unknown_device")."""
    device = device_get(device_id)
    if device is None:
        raise TokenRefused("unknown_device")
    return device


def device_token_check(token: str, device: Device) -> dict[str, Any]:
    """The claims of a token checked against its device (already loaded): key, revocation, book.

    Split from device_token_verify for edges that keep devices in memory (the share delivery
    lean route): the same checks in the same order, the device row coming from elsewhere.
    """
    claims = _decode(token, bytes(device.public_key), required=("sub", "book_id", "iat", "exp"))
    if device.is_revoked:
        raise TokenRefused("device_revoked", "This device was revoked; pair it again.")
    tokens_issued_check(device, claims["iat"])
    if str(_uuid_claim(claims, "book_id")) != str(device.book_id):
        raise TokenForbidden("book_mismatch", "The token's book is not the device's book.")
    return claims


def tokens_issued_check(device: Device, issued_at: float) -> None:
    """Refuse a credential issued (token `iat`, ticket issue time) before the device's tokens were revoked."""
    tokens_cutoff_check(device.tokens_valid_after, issued_at)


def tokens_cutoff_check(valid_after: datetime | None, issued_at: float) -> None:
    """Refuse a credential issued before `valid_after` (a device's tokens_valid_after, however it was read)."""
    if valid_after is not None and issued_at < valid_after.timestamp():
        raise TokenRefused(
            "token_revoked", "This token was issued before the device's tokens were revoked; sign a new one.",
            valid_after=int(valid_after.timestamp()),
        )  # fmt: skip


def self_signed_token_verify(token: str, *, public_key: bytes, device_id: uuid.UUID | None = None) -> uuid.UUID:
    """Verify a proof-of-possession token of a device not registered yet; return its `sub`.

    Book creation and pairing verify use it: the token is signed by the key the request
    registers, names the new device in `sub` (which must equal `device_id` when the body names
    one) and carries no `book_id`, so a registered device's token cannot register another one.
    """
    claims = _decode(token, public_key, required=("sub", "iat", "exp"))
    if "book_id" in claims:
        raise TokenRefused("unexpected_book_id", "A registration token must not carry a book_id claim.")
    subject = _uuid_claim(claims, "sub")
    if device_id is not None and subject != device_id:
        raise TokenRefused("subject_mismatch", "The token's sub is not the device_id of the request.")
    return subject


def _unverified_claims(token: str) -> dict[str, Any]:
    _check_header(token)
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRefused("malformed") from None


def _check_header(token: str) -> None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRefused("algorithm_not_allowed", "Only EdDSA tokens are accepted.")
    if any(name in header for name in _FORBIDDEN_HEADERS):
        raise TokenRefused("embedded_key_not_allowed", "Tokens must not carry their own key.")


def _decode(token: str, public_key: bytes, *, required: tuple[str, ...]) -> dict[str, Any]:
    _check_header(token)
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except (ValueError, InvalidKey):
        raise TokenRefused("bad_key") from None
    leeway = settings.DEVICE_TOKEN_LEEWAY_SECONDS
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            leeway=leeway,
            options={"require": list(required), "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRefused("expired") from None
    except jwt.ImmatureSignatureError:
        raise TokenRefused("issued_in_future") from None  # a future iat or nbf
    except jwt.MissingRequiredClaimError as exc:
        raise TokenRefused("missing_claim", f"The token lacks the {exc.claim!r} claim.") from None
    except jwt.InvalidSignatureError:
        raise TokenRefused("bad_signature") from None
    except jwt.PyJWTError:
        raise TokenRefused("malformed") from None
    iat, exp = claims["iat"], claims["exp"]
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
        raise TokenRefused("malformed")
    if iat > time.time() + leeway:
        raise TokenRefused("issued_in_future")
    if exp - iat > settings.DEVICE_TOKEN_MAX_LIFETIME_SECONDS:
        raise TokenRefused("lifetime_too_long", "A token may live at most 24 hours.")
    return claims


def _uuid_claim(claims: dict[str, Any], name: str) -> uuid.UUID:
    value = claims.get(name)
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        raise TokenRefused("malformed", f"The {name!r} claim must be a UUID.") from None


def token_refused_record(token: str, refused: ApplicationError) -> None:
    """Audit a refused device token: the claimed device (hashed by audit), the reason, never the token."""
    from apps.audit.models import EventType, Outcome
    from apps.audit.services import audit_event_record

    try:
        subject = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        subject = None
    audit_event_record(
        event_type=EventType.TOKEN_REFUSED,
        outcome=Outcome.FAILURE,
        actor_device_id=subject if isinstance(subject, str) and len(subject) <= 64 else None,
        details={"reason": refused.details.get("reason", refused.code)},
    )
