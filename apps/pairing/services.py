"""The pairing app's public writes: books and devices."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.models import EventType, Outcome
from apps.audit.hashing import id_hash
from apps.audit.services import audit_event_record
from apps.pairing import codes, device_cache, metrics
from apps.pairing.models import Book, Device
from homepocket.api.errors import ApplicationError


class DeviceAlreadyRegistered(ApplicationError):
    code = "DEVICE_ALREADY_REGISTERED"
    default_message = "This device id or public key is already registered."


def book_create(*, device_id: uuid.UUID, public_key: bytes, device_name: str) -> tuple[Book, Device, bool]:
    """Create a book with its first device; a retry by the same device returns the same book.

    Returns (book, device, created). A network retry of the very same registration (same device
    id and key, device still active) is answered with the existing book instead of a conflict,
    so a phone that lost the first answer still learns its book id.
    """
    try:
        with transaction.atomic():
            book = Book.objects.create()
            device = Device.objects.create(id=device_id, book=book, public_key=public_key, name=device_name)
            audit_event_record(
                event_type=EventType.BOOK_CREATED, outcome=Outcome.SUCCESS, actor_device_id=device.pk, book_id=book.pk
            )
        return book, device, True
    except IntegrityError:
        # The id or the key is taken: the unique constraints decided, not a read before the write.
        pass
    existing = Device.objects.select_related("book").filter(pk=device_id).first()
    if existing is not None and bytes(existing.public_key) == public_key and not existing.is_revoked:
        return existing.book, existing, False
    raise DeviceAlreadyRegistered()


# The channel-layer group told about revocations (on every node, after commit), so that whatever
# holds a device's live connections (the relay's sockets) can close them at once. Pairing does not
# know who listens: the relay joins this group.
DEVICE_REVOKED_GROUP = "devices.revoked"


def _revocation_announce(device_ids: list[str], reason: str = "device revoked") -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None or not device_ids:
        return
    try:
        message = {"type": "devices.revoked", "device_ids": device_ids, "reason": reason}
        async_to_sync(layer.group_send)(DEVICE_REVOKED_GROUP, message)
    except Exception as exc:  # the revocation stands; sockets re-check their token when they reconnect
        logging.getLogger("homepocket.pairing").warning(
            "revocation announce failed", extra={"event": "revocation_announce_failed", "error": type(exc).__name__}
        )


def _devices_changed_announce(device_ids: list[str], reason: str) -> None:
    """After commit: every node's device cache drops them, then their sockets close."""
    device_cache.devices_changed(device_ids)
    _revocation_announce(device_ids, reason=reason)


def devices_revoke(*, device_ids: list[uuid.UUID], actor_device_id=None, admin_user_id=None) -> int:
    """Revoke devices: their tokens are refused from now on, and live sockets are told to close. Returns how many were active."""
    with transaction.atomic():
        active = list(Device.objects.filter(pk__in=device_ids, revoked_at__isnull=True).values_list("pk", "book_id"))
        count = Device.objects.filter(pk__in=[pk for pk, _ in active], revoked_at__isnull=True).update(revoked_at=timezone.now())
        for device_pk, book_pk in active:
            audit_event_record(
                event_type=EventType.DEVICE_REVOKED, outcome=Outcome.SUCCESS, actor_device_id=actor_device_id,
                book_id=book_pk, target=f"device:{id_hash('device', device_pk)}",
                details={"by": "admin", "admin_user_id": admin_user_id} if admin_user_id else {"by": "device"},
            )  # fmt: skip
        if active:
            transaction.on_commit(lambda: _devices_changed_announce([str(pk) for pk, _ in active], "device revoked"))
    return count


def tokens_valid_after_next(now=None):
    """The cut-off a bump sets: now, rounded up to the next whole second.

    `iat` is whole seconds, so a token minted earlier in the very second of the bump has the same
    `iat` as one minted just after it; both are refused, and a new token is accepted from this
    second on (the refusal's `details.valid_after` says when).
    """
    now = now or timezone.now()
    return now.replace(microsecond=0) + timedelta(seconds=1) if now.microsecond else now


def device_tokens_revoke(*, device_ids: list[uuid.UUID], actor_device_id=None, admin_user_id=None) -> int:
    """Refuse every token the devices issued until now, on every node, and close their sockets. Returns how many."""
    valid_after = tokens_valid_after_next()
    with transaction.atomic():
        active = list(Device.objects.filter(pk__in=device_ids, revoked_at__isnull=True).values_list("pk", "book_id"))
        # Never moves back: a second bump in the same second changes nothing.
        Device.objects.filter(Q(tokens_valid_after__isnull=True) | Q(tokens_valid_after__lt=valid_after), pk__in=[pk for pk, _ in active]).update(
            tokens_valid_after=valid_after
        )
        for device_pk, book_pk in active:
            audit_event_record(
                event_type=EventType.DEVICE_TOKENS_REVOKED, outcome=Outcome.SUCCESS, actor_device_id=actor_device_id,
                book_id=book_pk, target=f"device:{id_hash('device', device_pk)}",
                details={
                    "valid_after": int(valid_after.timestamp()),
                    **({"by": "admin", "admin_user_id": admin_user_id} if admin_user_id else {"by": "device" if actor_device_id else "command"}),
                },
            )  # fmt: skip
        if active:
            transaction.on_commit(lambda: _devices_changed_announce([str(pk) for pk, _ in active], "tokens revoked"))
    return len(active)


# --- pairing: a new device joins a book with a 6-digit code ---------------------------------


class InvalidShortCode(ApplicationError):
    code = "INVALID_SHORT_CODE"
    default_message = "This pairing code is unknown, malformed or already used."


class ShortCodeExpired(ApplicationError):
    code = "SHORT_CODE_EXPIRED"
    default_message = "This pairing code has expired; ask for a new one."


class DeviceLimitReached(ApplicationError):
    code = "DEVICE_LIMIT_REACHED"
    default_message = "This book already has its maximum number of devices."


class DeviceNotFound(ApplicationError):
    code = "DEVICE_NOT_FOUND"
    default_message = "No device with this id in this book."


EXCHANGE_POLL_SECONDS = 0.2


class PairingLockedOut(ApplicationError):
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Too many wrong pairing codes; try again later."


@dataclass(frozen=True)
class PairingMatch:
    book_id: uuid.UUID
    device: Device
    initiator_device_id: uuid.UUID
    initiator_public_key: str


def pairing_code_create(*, device: Device) -> tuple[str, float]:
    """Make a 6-digit code for the device's book, live for 5 minutes. Returns (code, expires_at)."""
    code, live = codes.code_create(book_id=str(device.book_id), device_id=str(device.pk), public_key=device.public_key_b64)
    return code, live.expires_at


def pairing_verify(
    *, short_code: str, device_id: uuid.UUID, public_key: bytes, device_name: str, client_ip: str
) -> PairingMatch:
    """Join the code's book as a new device; exactly one caller wins a code, and a failure changes nothing."""
    subjects = [f"device:{device_id}", f"ip:{client_ip}"]
    if any(codes.failures_count(subject) >= settings.PAIRING_MAX_FAILURES for subject in subjects):
        _, retry_after = codes.failures_window()
        _pairing_failed(device_id, "locked_out")
        raise PairingLockedOut(headers={"Retry-After": str(retry_after)}, details={"retry_after": retry_after})
    well_formed = _well_formed(short_code)
    live = codes.code_get(short_code) if well_formed else None
    if live is None:
        if well_formed and codes.code_expired(short_code):
            _pairing_failed(device_id, "expired")
            raise ShortCodeExpired()
        for subject in subjects:
            codes.failure_record(subject)
        _pairing_failed(device_id, "invalid")
        raise InvalidShortCode()
    book_id = uuid.UUID(live.book_id)
    initiator = Device.objects.filter(pk=live.initiator_device_id, revoked_at__isnull=True).first()
    if initiator is None:
        raise InvalidShortCode()  # the device that made the code was revoked since
    # Refusals that must not burn the code are checked before it is claimed.
    if Device.objects.filter(Q(pk=device_id) | Q(public_key=public_key)).exists():
        raise DeviceAlreadyRegistered()
    if _active_devices(book_id) >= settings.BOOK_MAX_DEVICES:
        raise DeviceLimitReached()
    if not codes.code_claim(short_code):
        _pairing_failed(device_id, "lost_race")
        raise InvalidShortCode()
    try:
        device = _device_join(book_id=book_id, device_id=device_id, public_key=public_key, device_name=device_name)
    except ApplicationError:
        codes.code_restore(short_code, live)
        raise
    codes.code_complete(
        short_code,
        codes.Completion(
            initiator_device_id=live.initiator_device_id,
            joiner_device_id=str(device.pk),
            joiner_public_key=device.public_key_b64,
        ),
    )
    return PairingMatch(book_id, device, initiator.pk, live.initiator_public_key)


def pairing_exchange(*, short_code: str, device: Device, wait_seconds: float = 0) -> codes.Completion | None:
    """The joiner's key once it has verified (once), None while waiting; long-polls up to wait_seconds."""
    if not _well_formed(short_code):
        raise InvalidShortCode()
    deadline = time.monotonic() + wait_seconds
    while True:
        completion = codes.completion_get(short_code)
        if completion is not None and completion.initiator_device_id == str(device.pk):
            if codes.completion_claim(short_code):
                return completion
            raise InvalidShortCode()  # another exchange of the same device took it
        live = codes.code_get(short_code)
        # A verify that claimed the code and is still writing its device: wait for its completion.
        joining = live is None and codes.code_joining(short_code)
        if not joining and (live is None or live.initiator_device_id != str(device.pk)):
            if codes.code_expired(short_code):
                raise ShortCodeExpired()
            raise InvalidShortCode()
        if time.monotonic() >= deadline:
            return None
        time.sleep(EXCHANGE_POLL_SECONDS)


def device_revoke(*, book_id: uuid.UUID, device_id: uuid.UUID, actor_device_id: uuid.UUID) -> Device:
    """Revoke one device of a book (itself or another); revoking twice answers the same."""
    if not Device.objects.filter(pk=device_id, book_id=book_id).exists():
        raise DeviceNotFound()
    devices_revoke(device_ids=[device_id], actor_device_id=actor_device_id)
    return Device.objects.get(pk=device_id)


def _well_formed(short_code: str) -> bool:
    return len(short_code) == 6 and short_code.isascii() and short_code.isdigit()


def _active_devices(book_id: uuid.UUID) -> int:
    return Device.objects.filter(book_id=book_id, revoked_at__isnull=True).count()


def _device_join(*, book_id: uuid.UUID, device_id: uuid.UUID, public_key: bytes, device_name: str) -> Device:
    try:
        with transaction.atomic():
            # The book row lock (PostgreSQL) or the IMMEDIATE transaction (SQLite) serialises
            # joins of one book, so two joins cannot both pass the cap.
            Book.objects.select_for_update().filter(pk=book_id).first()
            if _active_devices(book_id) >= settings.BOOK_MAX_DEVICES:
                raise DeviceLimitReached()
            device = Device.objects.create(id=device_id, book_id=book_id, public_key=public_key, name=device_name)
            audit_event_record(event_type=EventType.DEVICE_PAIRED, outcome=Outcome.SUCCESS, actor_device_id=device_id, book_id=book_id)
            return device
    except IntegrityError:
        raise DeviceAlreadyRegistered() from None


def _pairing_failed(device_id: uuid.UUID, reason: str) -> None:
    metrics.PAIRING_VERIFY_FAILURES.labels(reason).inc()
    audit_event_record(
        event_type=EventType.PAIRING_FAILED, outcome=Outcome.FAILURE, actor_device_id=device_id, details={"reason": reason}
    )
