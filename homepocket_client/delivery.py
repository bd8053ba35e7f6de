"""Backup share delivery for apps: deposit shares, receive your own (verify, decrypt, confirm), with retries.

    from homepocket_client import HomePocketClient
    from homepocket_client.delivery import ShareDeliveryClient

    with HomePocketClient(url) as http:
        delivery = ShareDeliveryClient(http, server_public_key=PINNED_KEY)
        delivery.deposit(alice, backup_id=backup, recipient_device_id=bob.device_id, share=share_for_bob)
        received = delivery.receive(bob, backup_id=backup)   # request → verify → decrypt → confirm
        received.share

A request is built once (a fresh ephemeral secp256k1 key, a timestamp and a random nonce) and
the very same body is sent on every retry: the server answers an exact retry with the same bytes,
so an answer lost on the way is simply asked for again. Retries: exponential backoff from 100 ms
to 30 s with full jitter, at most 5 tries and 5 minutes in all, and only for failures that
waiting can fix (no answer, 5xx, 429, RETRY_LATER); never for a 4xx about the request itself.
See docs/share-delivery.md.
"""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from coincurve import PrivateKey

from homepocket_client.client import API_PREFIX, HomePocketClient
from homepocket_client.delivery_signature import delivery_digest, delivery_signature_valid
from homepocket_client.ecies import EciesError, ecies_decrypt
from homepocket_client.errors import HomePocketError, RetryableError, ServerError, TransportError
from homepocket_client.identity import DeviceIdentity

T = TypeVar("T")
# Mirrors the server's SHARE_DELIVERY_REPLAY_WINDOW_SECONDS: an answer stamped further from our
# clock than this is refused as a replay of an old answer.
ANSWER_MAX_SKEW_SECONDS = 300
SHARE_VERIFICATION_FAILED = "SHARE_VERIFICATION_FAILED"


class ShareVerificationError(HomePocketError):
    """The answer did not verify: bad server signature, stale timestamp, or ciphertext that does not open.

    Never sent by the server; `reason` is one of signature, timestamp, decrypt, mismatch.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(SHARE_VERIFICATION_FAILED, message, details={"reason": reason})
        self.reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And Jitter")."""

    base_seconds: float = 0.1
    cap_seconds: float = 30.0
    max_tries: int = 5
    budget_seconds: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    def delay(self, attempt: int) -> float:
        """The wait before try number attempt+1 (attempt counts from 0): uniform in [0, min(cap, base·2^attempt)]."""
        return self.random() * min(self.cap_seconds, self.base_seconds * 2**attempt)


def retryable(error: HomePocketError) -> bool:
    """No answer, 5xx, 429 and RETRY_LATER-style 503s: waiting may help. Validation and auth errors: never."""
    return isinstance(error, (TransportError, ServerError, RetryableError))


@dataclass(frozen=True)
class Deposited:
    delivery_id: uuid.UUID
    status: str


@dataclass(frozen=True)
class ReceivedShare:
    delivery_id: uuid.UUID
    backup_id: uuid.UUID
    share: bytes
    timestamp: int

    @property
    def share_sha256(self) -> str:
        return hashlib.sha256(self.share).hexdigest()


@dataclass(frozen=True)
class DeliveryState:
    delivery_id: uuid.UUID
    client_id: uuid.UUID
    backup_id: uuid.UUID
    status: str
    created_at: datetime
    delivered_at: datetime | None
    confirmed_at: datetime | None
    retry_count: int
    last_error: str


def _state_parse(data: dict[str, Any]) -> DeliveryState:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    return DeliveryState(
        delivery_id=uuid.UUID(data["delivery_id"]), client_id=uuid.UUID(data["client_id"]),
        backup_id=uuid.UUID(data["backup_id"]), status=data["status"], created_at=when(data["created_at"]),
        delivered_at=when(data["delivered_at"]), confirmed_at=when(data["confirmed_at"]),
        retry_count=data["retry_count"], last_error=data["last_error"],
    )  # fmt: skip


class ShareDeliveryClient:
    """Share delivery over a HomePocketClient. Pin `server_public_key` (33 bytes) in production.

    Without a pinned key the first answer's signer is learned from GET …/server_key (trust on
    first use) and kept for this object's life.
    """

    def __init__(
        self,
        http: HomePocketClient,
        *,
        server_public_key: bytes | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._server_public_key = server_public_key

    # -- the calls ------------------------------------------------------------------------------

    def server_public_key(self) -> bytes:
        if self._server_public_key is None:
            data = self._with_retries(lambda: self.http.request("GET", f"{API_PREFIX}/backup/delivery/server_key"))
            self._server_public_key = bytes.fromhex(data["public_key"])
        return self._server_public_key

    def deposit(
        self, identity: DeviceIdentity, *, backup_id: uuid.UUID, recipient_device_id: uuid.UUID, share: bytes
    ) -> Deposited:
        """Give the server `share` for one device of the book; a later deposit for the same pair replaces it."""
        body = {"backup_id": str(backup_id), "recipient_device_id": str(recipient_device_id),
                "share": base64.b64encode(share).decode()}  # fmt: skip
        data = self._with_retries(lambda: self.http.request("POST", f"{API_PREFIX}/backup/shares", identity=identity, json=body))
        return Deposited(uuid.UUID(data["delivery_id"]), data["status"])

    def request(self, identity: DeviceIdentity, *, backup_id: uuid.UUID) -> ReceivedShare:
        """Ask for this device's share of a backup; verify the server's signature and timestamp, decrypt it."""
        server_key = self.server_public_key()
        client_key = PrivateKey()  # fresh per request: the answer opens with this key only
        body = {
            "backup_id": str(backup_id),
            "client_public_key": client_key.public_key.format().hex(),
            "timestamp": int(self.clock()),
            "nonce": secrets.token_urlsafe(24),
        }
        data = self._with_retries(
            lambda: self.http.request("POST", f"{API_PREFIX}/backup/delivery/request", identity=identity, json=body)
        )
        return self._verified(data, identity=identity, backup_id=backup_id, client_key=client_key, server_key=server_key)

    def confirm(self, identity: DeviceIdentity, received: ReceivedShare) -> DeliveryState:
        """Tell the server the share arrived (the same confirm again is answered the same)."""
        return self._confirm(identity, received.delivery_id, received=True, share_sha256=received.share_sha256)

    def report_failure(self, identity: DeviceIdentity, delivery_id: uuid.UUID) -> DeliveryState:
        """Tell the server a delivery did not arrive intact: it counts a retry and lets the device ask again."""
        return self._confirm(identity, delivery_id, received=False, share_sha256="0" * 64)

    def receive(self, identity: DeviceIdentity, *, backup_id: uuid.UUID) -> ReceivedShare:
        """request → verify → decrypt → confirm. An answer that does not verify is reported and raised."""
        try:
            received = self.request(identity, backup_id=backup_id)
        except ShareVerificationError as error:
            delivery_id = error.details.get("delivery_id")
            if delivery_id is not None:
                self.report_failure(identity, uuid.UUID(delivery_id))
            raise
        self.confirm(identity, received)
        return received

    def status(self, identity: DeviceIdentity, delivery_id: uuid.UUID) -> DeliveryState:
        path = f"{API_PREFIX}/backup/delivery/status/{uuid.UUID(str(delivery_id))}"
        return _state_parse(self._with_retries(lambda: self.http.request("GET", path, identity=identity)))

    # -- internals ------------------------------------------------------------------------------

    def _confirm(self, identity, delivery_id, *, received: bool, share_sha256: str) -> DeliveryState:
        body = {"delivery_id": str(delivery_id), "received_successfully": received, "share_sha256": share_sha256}
        return _state_parse(self._with_retries(
            lambda: self.http.request("POST", f"{API_PREFIX}/backup/delivery/confirm", identity=identity, json=body)
        ))  # fmt: skip

    def _verified(self, data, *, identity, backup_id, client_key, server_key) -> ReceivedShare:
        delivery_id = uuid.UUID(data["delivery_id"])
        encrypted = base64.b64decode(data["encrypted_share"])
        timestamp = int(data["timestamp"])
        digest = delivery_digest(delivery_id=delivery_id, recipient_device_id=identity.device_id, backup_id=backup_id,
                                 timestamp=timestamp, encrypted_share=encrypted)  # fmt: skip
        if not delivery_signature_valid(server_key, bytes.fromhex(data["signature"]), digest):
            raise ShareVerificationError("signature", "the answer is not signed by the pinned server key")
        if abs(self.clock() - timestamp) > ANSWER_MAX_SKEW_SECONDS:
            raise ShareVerificationError("timestamp", "the answer's timestamp is outside the replay window")
        try:
            share = ecies_decrypt(client_key, encrypted, aad=delivery_id.bytes)
        except EciesError as error:
            failure = ShareVerificationError("decrypt", str(error))
            failure.details["delivery_id"] = str(delivery_id)  # signed by the server: safe to report against
            raise failure from None
        return ReceivedShare(delivery_id, backup_id, share, timestamp)

    def _with_retries(self, call: Callable[[], T]) -> T:
        started = self.retry.monotonic()
        attempt = 0
        while True:
            try:
                return call()
            except HomePocketError as error:
                attempt += 1
                if not retryable(error) or attempt >= self.retry.max_tries:
                    raise
                wait = self.retry.delay(attempt - 1)
                if isinstance(error, RetryableError) and error.retry_after:
                    wait = max(wait, float(error.retry_after))
                if self.retry.monotonic() - started + wait > self.retry.budget_seconds:
                    raise
                self.retry.sleep(wait)
