"""The master key (custody) as share delivery uses it, and the server's signing key for answers.

Shares at rest and the server's private key are both wrapped by the same master key custody as
signing keys (signer/custody.py: a local key file or AWS KMS). The signing key is made once per
deployment (one row; the primary key decides between nodes making it at once), kept wrapped in
the database, and opened once per process: every node signs with the same key, so clients can pin
its public half from `GET /api/v1/backup/delivery/server_key`.
"""

from __future__ import annotations

import threading
import uuid

from coincurve import PrivateKey
from coincurve.ecdsa import der_to_cdata, serialize_compact
from django.db import IntegrityError, transaction

from apps.backups.delivery.models import DeliveryServerKey
from homepocket.api.errors import ApplicationError
from signer.custody import Custody, CustodyError, CustodyUnavailable, custody_from_environ

SERVER_KEY_CONTEXT = b"homepocket/backups/delivery-server-key/v1"
SHARE_CONTEXT_PREFIX = b"homepocket/backups/share/v1/"

_lock = threading.RLock()  # server_key() holds it while it asks custody()
_custody: Custody | None = None
_server_key: PrivateKey | None = None


class CustodyDown(ApplicationError):
    code = "RETRY_LATER"
    default_message = "The key custodian is unreachable; retry later."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": "5"}, details={"retry_after": 5})


def custody() -> Custody:
    global _custody
    if _custody is None:
        with _lock:
            if _custody is None:
                _custody = custody_from_environ()
    return _custody


def share_wrap(*, delivery_id: uuid.UUID, share: bytes) -> tuple[bytes, str]:
    """(blob, master key id): the share sealed under the master key, bound to its delivery."""
    try:
        return custody().wrap(share, context=SHARE_CONTEXT_PREFIX + delivery_id.bytes)
    except CustodyUnavailable:
        raise CustodyDown() from None


def share_unwrap(*, delivery_id: uuid.UUID, blob: bytes) -> bytes:
    try:
        return custody().unwrap(blob, context=SHARE_CONTEXT_PREFIX + delivery_id.bytes)
    except CustodyUnavailable:
        raise CustodyDown() from None


def server_key() -> PrivateKey:
    """The signing key of this deployment, made on first use and opened once per process."""
    global _server_key
    if _server_key is None:
        with _lock:
            if _server_key is None:
                _server_key = _server_key_load_or_create()
    return _server_key


def server_public_key() -> bytes:
    return server_key().public_key.format(compressed=True)


def server_sign(digest: bytes) -> bytes:
    """64-byte compact ECDSA signature (low-S, RFC 6979 nonce, by libsecp256k1) over a 32-byte digest."""
    return serialize_compact(der_to_cdata(server_key().sign(digest, hasher=None)))


def server_key_forget() -> None:
    """Drop this process's copy (tests, and after an operator replaced the row)."""
    global _server_key, _custody
    with _lock:
        _server_key = None
        _custody = None


def _server_key_load_or_create() -> PrivateKey:
    row = DeliveryServerKey.objects.filter(pk=1).first()
    if row is None:
        key = PrivateKey()
        try:
            blob, master = custody().wrap(key.secret, context=SERVER_KEY_CONTEXT)
        except CustodyUnavailable:
            raise CustodyDown() from None
        try:
            with transaction.atomic():
                DeliveryServerKey.objects.create(
                    pk=1, public_key=key.public_key.format().hex(), wrapped_private_key=blob, master_key_id=master
                )
            return key
        except IntegrityError:
            row = DeliveryServerKey.objects.get(pk=1)  # another node made it first: use theirs
    try:
        return PrivateKey(custody().unwrap(bytes(row.wrapped_private_key), context=SERVER_KEY_CONTEXT))
    except CustodyUnavailable:
        raise CustodyDown() from None
    except CustodyError:
        raise ApplicationError("The delivery server key does not open under this master key.") from None


def delivery_master_keys_rewrap(*, custody_: Custody, new_master: str) -> set[str]:
    """Re-wrap every wrapped share and the server key under `new_master`; the master key ids still in use after.

    For the master-key rotation (apps/signing services.signing_master_key_rotate): it must call
    this, and keep the ids it returns, before it retires old master keys, or shares and the
    server key become unreadable. Conditional per row, so a concurrent run is harmless.
    """
    from apps.backups.delivery.models import ShareDelivery

    for delivery_id, blob, old_master in ShareDelivery.objects.exclude(master_key_id=new_master).values_list(
        "id", "wrapped_share", "master_key_id"
    ).iterator():
        try:
            rewrapped, master = custody_.rewrap(bytes(blob), context=SHARE_CONTEXT_PREFIX + delivery_id.bytes)
        except CustodyError:
            continue  # stays on its old master key, which is then reported as still used
        ShareDelivery.objects.filter(pk=delivery_id, master_key_id=old_master).update(wrapped_share=rewrapped, master_key_id=master)
    row = DeliveryServerKey.objects.filter(pk=1).exclude(master_key_id=new_master).first()
    if row is not None:
        try:
            rewrapped, master = custody_.rewrap(bytes(row.wrapped_private_key), context=SERVER_KEY_CONTEXT)
            DeliveryServerKey.objects.filter(pk=1, master_key_id=row.master_key_id).update(
                wrapped_private_key=rewrapped, master_key_id=master
            )
        except CustodyError:
            pass
    used = set(ShareDelivery.objects.exclude(master_key_id=new_master).values_list("master_key_id", flat=True))
    used |= set(DeliveryServerKey.objects.exclude(master_key_id=new_master).values_list("master_key_id", flat=True))
    return used
