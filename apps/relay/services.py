"""The relay's public functions: socket admission, browser tickets, and relaying over HTTP.

The relay never decrypts, parses, stores or alters a payload: it checks that it is base64 text
under the size cap and passes the very same string on (docs/relay.md).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache

from apps.pairing import selectors as pairing_selectors
from apps.pairing.authentication import device_touch
from apps.pairing.device_tokens import (
    TokenForbidden,
    TokenRefused,
    VerifiedDevice,
    bearer_token_from_header,
    device_token_verify,
    token_refused_record,
)
from apps.pairing.models import Device
from apps.quotas.services import QuotaSubjects, quota_consume
from apps.relay import bus, messages
from homepocket.api.errors import ApplicationError


class RelayUnavailable(ApplicationError):
    code = "RETRY_LATER"
    default_message = "The relay cannot reach its shared state (Redis); retry later."

    def __init__(self, message: str | None = None):
        super().__init__(message, headers={"Retry-After": "1"}, details={"retry_after": 1})


class FrameTooLarge(ApplicationError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The relay payload is larger than the 256 KiB frame cap."


@dataclass(frozen=True)
class RelayPrincipal:
    """Who a socket belongs to, decided once at connect."""

    device_id: str
    book_id: str
    expires_at: float | None  # the token's exp (epoch s); a ticket's socket lives until revoked


# --- sockets ------------------------------------------------------------------------------------


def relay_socket_authenticate(*, book_id: str, authorization: str | None, subprotocols: list[str]) -> RelayPrincipal:
    """Admit a socket to a book: a bearer token (native apps) or a one-time ticket (browsers).

    Raises TokenRefused (→ 4401), Forbidden (→ 4403) or the quotas' RateLimitExceeded (→ 4429).
    """
    tickets = [p[len(messages.TICKET_SUBPROTOCOL_PREFIX) :] for p in subprotocols if p.startswith(messages.TICKET_SUBPROTOCOL_PREFIX)]
    token = bearer_token_from_header(authorization)
    if token is not None:
        try:
            verified = device_token_verify(token)
        except ApplicationError as refused:
            token_refused_record(token, refused)
            raise
        expires_at = float(verified.claims["exp"])
    elif tickets:
        verified = _ticket_redeem(tickets[0])
        expires_at = None
    else:
        raise TokenRefused("missing", "Send 'Authorization: Bearer <token>' or a ticket subprotocol.")
    if str(verified.book_id) != book_id:
        raise TokenForbidden("book_mismatch", "The token's book is not this socket's book.")
    relay_connect_admit(verified=verified)
    device_touch(verified)
    return RelayPrincipal(device_id=str(verified.device_id), book_id=book_id, expires_at=expires_at)


def relay_connect_admit(*, verified: VerifiedDevice) -> None:
    """Count a connect against the relay.connect policy (5 per 10 minutes per device by default).

    A refusal raises RATE_LIMIT_EXCEEDED and the socket closes with 4429; with the rate-limit
    store down the policy's fail mode decides (open by default; closed → RETRY_LATER → 1013).
    """
    quota_consume(
        scopes=("relay.connect",),
        subjects=QuotaSubjects(device_id=verified.device_id, book_id=verified.book_id, plan=verified.device.book.plan),
    )


def relay_socket_closed(*, device_id: str) -> None:
    """A socket ended: the device was seen now (at most one write per interval, as for HTTP)."""
    device = Device.objects.filter(pk=device_id).first()
    if device is not None:
        device_touch(VerifiedDevice(device=device, claims={}))


# --- browser tickets ----------------------------------------------------------------------------


def _ticket_key(ticket: str) -> str:
    # The cache holds a hash: a cache dump does not hand out live tickets.
    return "relay:ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def relay_ticket_issue(*, principal: VerifiedDevice) -> tuple[str, int]:
    """A one-time ticket for a browser's socket, live RELAY_TICKET_TTL_SECONDS. Returns (ticket, ttl)."""
    ticket = secrets.token_urlsafe(32)
    ttl = settings.RELAY_TICKET_TTL_SECONDS
    cache.set(_ticket_key(ticket), f"{principal.device_id}|{principal.book_id}", timeout=ttl)
    return ticket, ttl


def _ticket_redeem(ticket: str) -> VerifiedDevice:
    key = _ticket_key(ticket)
    value = cache.get(key)
    # The delete decides between two sockets presenting the same ticket: one wins.
    if value is None or not cache.delete(key):
        raise TokenRefused("ticket_unknown", "The ticket is unknown, expired or already used.")
    device_id, _, book_id = value.partition("|")
    device = Device.objects.select_related("book").filter(pk=device_id).first()
    if device is None or device.is_revoked:
        raise TokenRefused("device_revoked", "This device was revoked; pair it again.")
    return VerifiedDevice(device=device, claims={"sub": device_id, "book_id": book_id})


# --- HTTP send ----------------------------------------------------------------------------------


def relay_operation_send(*, principal: VerifiedDevice, book_id: uuid.UUID, payload: str, timestamp: int | float) -> tuple[int, int]:
    """Relay one operation for a device without a socket; returns (seq, sockets reached)."""
    book = pairing_selectors.book_get_for_device(book_id=book_id, device_book_id=principal.book_id)
    if len(payload) > settings.RELAY_MAX_FRAME_BYTES:
        raise FrameTooLarge()
    try:
        operation = messages.CrdtOperation(payload=messages.payload_check(payload), timestamp=messages.timestamp_check(timestamp))
    except messages.FrameError as exc:
        raise ApplicationError(str(exc), code="INVALID_ARGUMENT") from None
    device_id, relay_timestamp = str(principal.device_id), int(time.time() * 1000)
    try:
        if settings.REDIS_URL:
            head, tail = messages.relayed_operation_parts(operation=operation, device_id=device_id, relay_timestamp=relay_timestamp)
            return bus.operation_publish_sync(book_id=str(book.pk), device_id=device_id, head=head, tail=tail, now_ms=relay_timestamp)
        return async_to_sync(_local_send)(str(book.pk), device_id, operation, relay_timestamp)
    except bus.BusUnavailable:
        raise RelayUnavailable() from None


async def _local_send(book_id: str, device_id: str, operation: messages.CrdtOperation, relay_timestamp: int) -> tuple[int, int]:
    """Embedded mode: through the hub of the server's loop (async_to_sync runs us there)."""
    from apps.relay.hub import relay_hub

    hub = await relay_hub()
    return await hub.relay(book_id=book_id, device_id=device_id, operation=operation, relay_timestamp=relay_timestamp, count_recipients=True)
