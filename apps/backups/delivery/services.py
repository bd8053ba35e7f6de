"""Share delivery's public writes: deposit, request, confirm, operator retry, expiry.

Every state change is one conditional UPDATE (`WHERE status = <expected>`, and for a counted
retry also `AND retry_count = <seen>`) whose row count decides; the history row and the audit
event are written in the same transaction (CONVENTIONS 6). Two requests racing for one PENDING
delivery both get an answer, and exactly one of them records PENDING → DELIVERED.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.hashing import id_hash
from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.backups.delivery import keys, metrics
from apps.backups.delivery.models import (
    ACTIVE_STATUSES,
    DeliveryStatus,
    ShareDelivery,
    ShareDeliveryRequest,
    ShareDeliveryTransition,
)
from apps.backups.delivery.request_rows import PreviousRequest, request_record_if_delivered, request_state_load
from apps.pairing.device_tokens import TokenRefused, tokens_cutoff_check
from apps.pairing.models import Device
from apps.pairing.services import DeviceNotFound
from homepocket.api.errors import ApplicationError
from homepocket_client.delivery_signature import delivery_digest
from homepocket_client.ecies import ecies_encrypt

logger = logging.getLogger("homepocket.backups.delivery")


def now() -> datetime:
    """The clock of share delivery; tests move it by patching this function."""
    return timezone.now()


class DeliveryNotFound(ApplicationError):
    code = "DELIVERY_NOT_FOUND"
    default_message = "No share delivery with this id (or for this backup) is addressed to this device."


class InvalidState(ApplicationError):
    code = "INVALID_STATE"
    default_message = "The share delivery is not in a state that allows this."


class ReplayDetected(ApplicationError):
    code = "REPLAY_DETECTED"
    default_message = "This request is too old, or its nonce was used with another body."


class RetryLater(ApplicationError):
    code = "RETRY_LATER"
    default_message = "The last attempt failed; the share can be requested again after Retry-After."


@dataclass(frozen=True)
class DeliveryAnswer:
    delivery_id: uuid.UUID
    encrypted_share: bytes
    signature: str
    timestamp: int


# --- deposit ----------------------------------------------------------------------------------


def share_deposit(
    *, depositor_device_id: uuid.UUID, book_id: uuid.UUID, backup_id: uuid.UUID, recipient_device_id: uuid.UUID, share: bytes
) -> ShareDelivery:
    """Keep a share for one device of the book; a live delivery of the same (backup, recipient) is failed."""
    if not Device.objects.filter(pk=recipient_device_id, book_id=book_id, revoked_at__isnull=True).exists():
        raise DeviceNotFound()
    delivery_id = uuid.uuid4()
    blob, master_key_id = keys.share_wrap(delivery_id=delivery_id, share=share)
    at = now()
    # Two deposits racing for one (backup, recipient): the partial unique index lets one be live;
    # the loser fails the winner's row as replaced and inserts again (last deposit wins).
    for _ in range(5):
        try:
            with transaction.atomic():
                for old in ShareDelivery.objects.filter(
                    backup_id=backup_id, recipient_device_id=recipient_device_id, status__in=ACTIVE_STATUSES
                ):
                    _transition(old, to=DeliveryStatus.FAILED, reason="replaced", at=at, actor_device_id=depositor_device_id,
                                failed_at=at, last_error="replaced")  # fmt: skip
                delivery = ShareDelivery.objects.create(
                    id=delivery_id, book_id=book_id, backup_id=backup_id, recipient_device_id=recipient_device_id,
                    depositor_device_id=depositor_device_id, wrapped_share=blob, master_key_id=master_key_id,
                    share_sha256=hashlib.sha256(share).hexdigest(), created_at=at,
                    deadline_at=at + timedelta(seconds=settings.SHARE_DELIVERY_DEADLINE_SECONDS),
                )  # fmt: skip
                _history(delivery, from_status="", to=DeliveryStatus.PENDING, reason="deposited", at=at,
                         actor_device_id=depositor_device_id)  # fmt: skip
            return delivery
        except IntegrityError:
            continue
    raise RetryLater("Deposits for this backup and device are racing; retry.", headers={"Retry-After": "1"})


# --- request ----------------------------------------------------------------------------------


def request_body_sha256(*, backup_id: uuid.UUID, client_public_key: bytes, timestamp: int, nonce: str) -> str:
    canonical = f"{backup_id}|{client_public_key.hex()}|{int(timestamp)}|{nonce}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def share_delivery_request(
    *, device: Device, backup_id: uuid.UUID, client_public_key: bytes, timestamp: int, nonce: str,
    token_issued_at: float | None = None,
) -> DeliveryAnswer:
    """Hand the device its share, ECIES-encrypted to `client_public_key` and signed; an exact retry gets the same answer.

    `token_issued_at` (the token's `iat`) is checked against the device's token cut-off as read
    with the request's state, for callers whose device row may be older than that cut-off.
    """
    started = time.perf_counter()
    outcome = "error"
    try:
        answer, outcome = _request(
            device=device, backup_id=backup_id, client_public_key=client_public_key, timestamp=timestamp, nonce=nonce,
            token_issued_at=token_issued_at,
        )  # fmt: skip
        return answer
    except ApplicationError as error:
        outcome = error.code.lower()
        raise
    finally:
        metrics.REQUEST_SECONDS.labels(outcome).observe(time.perf_counter() - started)


def _request(*, device, backup_id, client_public_key, timestamp, nonce, token_issued_at) -> tuple[DeliveryAnswer, str]:
    at = now()
    window = settings.SHARE_DELIVERY_REPLAY_WINDOW_SECONDS
    if abs(at.timestamp() - timestamp) > window:
        raise ReplayDetected(details={"reason": "timestamp_outside_window", "window_seconds": window})
    body = request_body_sha256(backup_id=backup_id, client_public_key=client_public_key, timestamp=timestamp, nonce=nonce)
    # One SELECT for the device's revocation, the nonce and the delivery; one statement to keep the
    # answer (request_rows.py). The lean route calls this with a device from its memory, so the
    # revocation and token cut-off read here decide that a revoked device or token gets nothing.
    state = request_state_load(device_id=device.pk, backup_id=backup_id, nonce=nonce)
    if state.device_revoked:
        raise TokenRefused("device_revoked", "This device was revoked; pair it again.")
    if token_issued_at is not None:
        tokens_cutoff_check(state.tokens_valid_after, token_issued_at)
    if state.previous is not None:
        return _replayed(state.previous, body), "replayed"
    delivery = _delivery_for_request(state.delivery, at=at)
    share = keys.share_unwrap(delivery_id=delivery.pk, blob=delivery.wrapped_share)
    encrypted = ecies_encrypt(client_public_key, share, aad=delivery.pk.bytes)
    stamp = int(at.timestamp())
    digest = delivery_digest(
        delivery_id=delivery.pk, recipient_device_id=device.pk, backup_id=backup_id, timestamp=stamp, encrypted_share=encrypted
    )
    signature = keys.server_sign(digest).hex()
    record = functools.partial(
        request_record_if_delivered, delivery_id=delivery.pk, device_id=device.pk, nonce=nonce, body_sha256=body,
        encrypted_share=encrypted, signature=signature, timestamp=stamp, created_at=at,
    )  # fmt: skip
    try:
        if delivery.status == DeliveryStatus.PENDING:
            with transaction.atomic():
                # Of racing requests one moves it (its history row and audit event with it); the
                # others wait for that UPDATE, match nothing, and find it DELIVERED below.
                _transition(delivery, to=DeliveryStatus.DELIVERED, reason="requested", at=at, actor_device_id=device.pk,
                            delivered_at=at, next_attempt_at=None)  # fmt: skip
                if not record():
                    raise InvalidState(details={"reason": "changed_meanwhile"})
        elif not record():
            # DELIVERED when read, something else now (confirmed, failed, replaced meanwhile):
            # refused, nothing kept. Still DELIVERED is a re-delivery of the same share.
            raise InvalidState(details={"reason": "changed_meanwhile"})
    except IntegrityError:
        # The same nonce raced us; its row decides.
        previous = ShareDeliveryRequest.objects.get(device_id=device.pk, nonce=nonce)
        kept = PreviousRequest(previous.delivery_id, previous.body_sha256, bytes(previous.encrypted_share), previous.signature,
                               previous.timestamp)  # fmt: skip
        return _replayed(kept, body), "replayed"
    return DeliveryAnswer(delivery.pk, encrypted, signature, stamp), "delivered"


def _replayed(previous: PreviousRequest, body_sha256: str) -> DeliveryAnswer:
    if not hmac.compare_digest(previous.body_sha256, body_sha256):
        raise ReplayDetected(details={"reason": "nonce_reused"})
    return DeliveryAnswer(previous.delivery_id, previous.encrypted_share, previous.signature, previous.timestamp)


def _delivery_for_request(delivery: ShareDelivery | None, *, at: datetime) -> ShareDelivery:
    if delivery is None:
        raise DeliveryNotFound()
    if delivery.status not in ACTIVE_STATUSES:
        raise InvalidState(details={"reason": f"delivery_{delivery.status.lower()}", "status": delivery.status})
    if delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at and delivery.next_attempt_at > at:
        wait = max(1, int((delivery.next_attempt_at - at).total_seconds() + 0.999))
        raise RetryLater(headers={"Retry-After": str(wait)}, details={"retry_after": wait})
    return delivery


# --- confirm ----------------------------------------------------------------------------------


def share_delivery_confirm(
    *, device: Device, delivery_id: uuid.UUID, received_successfully: bool, share_sha256: str
) -> ShareDelivery:
    """CONFIRMED when the device got the deposited share; otherwise count a retry (PENDING, or FAILED after the last)."""
    delivery = ShareDelivery.objects.filter(pk=delivery_id, recipient_device_id=device.pk).first()
    if delivery is None:
        raise DeliveryNotFound()
    matches = hmac.compare_digest(delivery.share_sha256, share_sha256.lower())
    at = now()
    if delivery.status == DeliveryStatus.CONFIRMED:
        if received_successfully and matches:
            return delivery  # the same confirm again (its answer was lost): same result
        raise InvalidState(details={"reason": "already_confirmed", "status": delivery.status})
    if delivery.status != DeliveryStatus.DELIVERED:
        raise InvalidState(details={"reason": "not_delivered", "status": delivery.status})
    with transaction.atomic():
        if received_successfully and matches:
            if _transition(delivery, to=DeliveryStatus.CONFIRMED, reason="confirmed", at=at, actor_device_id=device.pk,
                           confirmed_at=at):  # fmt: skip
                return ShareDelivery.objects.get(pk=delivery.pk)
        else:
            reason = "not_received" if not received_successfully else "hash_mismatch"
            if _retry_count(delivery, reason=reason, at=at, actor_device_id=device.pk):
                return ShareDelivery.objects.get(pk=delivery.pk)
    # The conditional UPDATE matched nothing: another confirm changed it first. Same confirm → same answer.
    current = ShareDelivery.objects.get(pk=delivery.pk)
    if current.status == DeliveryStatus.CONFIRMED and received_successfully and matches:
        return current
    raise InvalidState(details={"reason": "changed_meanwhile", "status": current.status})


def _retry_count(delivery: ShareDelivery, *, reason: str, at: datetime, actor_device_id=None) -> bool:
    tries = delivery.retry_count + 1
    metrics.RETRIES.labels(reason).inc()
    if tries >= settings.SHARE_DELIVERY_MAX_TRIES:
        return _transition(delivery, to=DeliveryStatus.FAILED, reason=reason, at=at, actor_device_id=actor_device_id,
                           expect_retry_count=True, retry_count=tries, last_error=reason, failed_at=at)  # fmt: skip
    return _transition(
        delivery, to=DeliveryStatus.PENDING, reason=reason, at=at, actor_device_id=actor_device_id, expect_retry_count=True,
        retry_count=tries, last_error=reason, next_attempt_at=at + timedelta(seconds=retry_backoff_seconds(tries)),
    )  # fmt: skip


def retry_backoff_seconds(tries: int) -> float:
    """The server's wait before the next delivery attempt: base · 2^(tries-1), capped."""
    return min(settings.SHARE_DELIVERY_RETRY_BASE_SECONDS * 2 ** max(0, tries - 1), settings.SHARE_DELIVERY_RETRY_MAX_SECONDS)


# --- operators and periodic work ----------------------------------------------------------------


def share_delivery_retry(*, delivery_id: uuid.UUID, admin_user_id=None) -> ShareDelivery:
    """Operator: put a FAILED delivery back to PENDING with a fresh deadline and try budget."""
    delivery = ShareDelivery.objects.filter(pk=delivery_id).first()
    if delivery is None:
        raise DeliveryNotFound()
    if delivery.status != DeliveryStatus.FAILED:
        raise InvalidState(details={"reason": "not_failed", "status": delivery.status})
    at = now()
    try:
        with transaction.atomic():
            moved = _transition(
                delivery, to=DeliveryStatus.PENDING, reason="operator_retry", at=at, admin_user_id=admin_user_id,
                retry_count=0, last_error="", failed_at=None, delivered_at=None, next_attempt_at=None,
                deadline_at=at + timedelta(seconds=settings.SHARE_DELIVERY_DEADLINE_SECONDS),
            )  # fmt: skip
    except IntegrityError:
        # A newer deposit for the same backup and device is live: this one stays replaced.
        raise InvalidState(details={"reason": "superseded_by_a_newer_deposit"}) from None
    if not moved:
        raise InvalidState(details={"reason": "not_failed", "status": ShareDelivery.objects.get(pk=delivery_id).status})
    return ShareDelivery.objects.get(pk=delivery_id)


def share_deliveries_expire() -> int:
    """Fail live deliveries past their confirmation deadline; returns how many. Safe to run twice."""
    at = now()
    failed = 0
    overdue = ShareDelivery.objects.filter(status__in=ACTIVE_STATUSES, deadline_at__lt=at).order_by("deadline_at")
    for delivery in overdue[:1000]:
        with transaction.atomic():
            failed += _transition(delivery, to=DeliveryStatus.FAILED, reason="deadline", at=at, failed_at=at,
                                  last_error="deadline")  # fmt: skip
    if failed:
        logger.info("share deliveries expired", extra={"count": failed})
    return failed


def share_delivery_requests_purge() -> int:
    """Forget request nonces past twice the replay window: their timestamps are refused anyway."""
    cutoff = now() - timedelta(seconds=2 * settings.SHARE_DELIVERY_REPLAY_WINDOW_SECONDS)
    deleted, _ = ShareDeliveryRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# --- the one place a state changes -----------------------------------------------------------


def _transition(
    delivery: ShareDelivery, *, to: str, reason: str, at: datetime, actor_device_id=None, admin_user_id=None,
    expect_retry_count: bool = False, **updates,
) -> bool:  # fmt: skip
    """UPDATE … WHERE status = <the status we saw>; on success write the history row and the audit event.

    Call inside transaction.atomic(). Returns False (and writes nothing) when the row moved on.
    """
    rows = ShareDelivery.objects.filter(pk=delivery.pk, status=delivery.status)
    if expect_retry_count:
        rows = rows.filter(retry_count=delivery.retry_count)
    if rows.update(status=to, **updates) != 1:
        return False
    _history(delivery, from_status=delivery.status, to=to, reason=reason, at=at, actor_device_id=actor_device_id,
             admin_user_id=admin_user_id, retry_count=updates.get("retry_count", delivery.retry_count))  # fmt: skip
    return True


def _history(
    delivery: ShareDelivery, *, from_status: str, to: str, reason: str, at: datetime, actor_device_id=None,
    admin_user_id=None, retry_count: int = 0,
) -> None:  # fmt: skip
    ShareDeliveryTransition.objects.create(
        delivery_id=delivery.pk, from_status=from_status, to_status=to, reason=reason, retry_count=retry_count, at=at
    )
    details = {"from": from_status, "to": to, "reason": reason, "retry_count": retry_count}
    if admin_user_id is not None:
        details["admin_user_id"] = admin_user_id
    audit_event_record(
        event_type=EventType.SHARE_DELIVERY_CHANGED, outcome=Outcome.FAILURE if to == DeliveryStatus.FAILED else Outcome.SUCCESS,
        actor_device_id=actor_device_id, book_id=delivery.book_id,
        target=f"share_delivery:{id_hash('share_delivery', delivery.pk)}", details=details,
    )  # fmt: skip
    transaction.on_commit(lambda: metrics.DELIVERIES.labels(to).inc())
