"""The signing app's public face: create a key, sign a digest (CONVENTIONS 3)."""

from __future__ import annotations

import logging
import uuid
from uuid import UUID

from asgiref.sync import async_to_sync
from django.utils.module_loading import import_string
from django.db import transaction

from apps.audit.models import EventType, Outcome
from apps.audit.services import audit_event_record
from apps.signing.addresses import eip55_address
from apps.signing.client import SignerRefused, SignerUnavailable, signer_client
from apps.signing.errors import SignerRetryLater, SigningKeyNotFound, UnlockRequired
from apps.signing.models import SigningKey
from apps.signing.selectors import signing_key_record_cached
from apps.signing.usage import usage_count
from signer.custody import CustodyError, custody_from_environ
from signer.protocol import Status

log = logging.getLogger("homepocket.signing")


def _refusal(exc: Exception) -> Exception:
    """A signer failure as the documented error: UNLOCK_REQUIRED or RETRY_LATER."""
    if isinstance(exc, SignerRefused) and exc.status is Status.UNLOCK_REQUIRED:
        return UnlockRequired()
    reason = "unreachable" if isinstance(exc, SignerUnavailable) else exc.status.name.lower()
    log.warning("signing.signer_refused", extra={"reason": reason})
    return SignerRetryLater(reason)


def signing_key_create(*, api_key_id: UUID) -> SigningKey:
    """Make a key pair inside a signer and store its public half and wrapped private half."""
    key_id = uuid.uuid4()

    async def create():
        return await signer_client().create(key_id)

    try:
        created = async_to_sync(create)()
    except (SignerUnavailable, SignerRefused) as exc:
        raise _refusal(exc) from None
    with transaction.atomic():
        key = SigningKey.objects.create(
            id=key_id, api_key_id=api_key_id, public_key=created.public_key.hex(),
            address=eip55_address(created.public_key), wrapped_key=created.material.wrapped_key,
            wrapped_dek=created.material.wrapped_dek, master_key_id=created.master_key_id,
        )  # fmt: skip
        audit_event_record(
            event_type=EventType.SIGNING_KEY_CREATED, outcome=Outcome.SUCCESS, api_key_id=api_key_id, target=str(key_id)
        )
    log.info("signing.key_created", extra={"key_id": str(key_id)})
    return key


async def signing_sign(*, api_key_id: UUID, key_id: UUID, digest: bytes) -> dict:
    """Sign a 32-byte digest with the caller's key: {signature, recovery_id, der} as hex."""
    record = await signing_key_record_cached(key_id=key_id)
    if record is None or record.api_key_id != api_key_id:
        raise SigningKeyNotFound()
    client = signer_client()
    try:
        try:
            result = await client.sign(key_id, digest, record.material)
        except SignerRefused as exc:
            if exc.status is not Status.UNWRAP_FAILED:
                raise
            # The cached material may predate a master-key rotation: read it again, once.
            record = await signing_key_record_cached(key_id=key_id, fresh=True)
            if record is None or record.api_key_id != api_key_id:
                raise SigningKeyNotFound() from None
            result = await client.sign(key_id, digest, record.material)
    except (SignerUnavailable, SignerRefused) as exc:
        raise _refusal(exc) from None
    usage_count(key_id=key_id, api_key_id=api_key_id)
    return {"signature": result.signature.hex(), "recovery_id": result.recovery_id, "der": result.der.hex()}


# Functions (custody_=, new_master=) -> master key ids still in use, one per app that stores data
# wrapped by the master key: share delivery now, server backups' key bundle when it lands.
MASTER_KEY_USERS = ["apps.backups.delivery.keys.delivery_master_keys_rewrap", "apps.backups.engine.services.backup_master_keys_rewrap"]


def signing_master_key_rotate(*, progress=None, batch_size: int = 500) -> dict:
    """Make a new master key current, re-wrap every data key under it, then retire the old master keys.

    Private keys are not touched (their data keys are the same, only wrapped anew), so every key
    keeps signing throughout; signers reload the key file when they meet the new master key id.
    """
    custody = custody_from_environ()
    new_master = custody.rotate()
    pending = SigningKey.objects.exclude(master_key_id=new_master)
    total = pending.count()
    done, failed = 0, set()
    while True:
        rows = list(pending.exclude(pk__in=failed).values_list("id", "wrapped_dek", "master_key_id")[:batch_size])
        if not rows:
            break
        for key_id, blob, old_master in rows:
            try:
                rewrapped, master = custody.rewrap(bytes(blob), context=key_id.bytes)
            except CustodyError:
                failed.add(key_id)
                log.error("signing.rewrap_failed", extra={"key_id": str(key_id)})
                continue
            # Conditional: a row re-wrapped by a concurrent run meanwhile is left as that run made it.
            SigningKey.objects.filter(pk=key_id, master_key_id=old_master).update(wrapped_dek=rewrapped, master_key_id=master)
        done += len(rows)
        if progress:
            progress(done, total)
    still_used = set(SigningKey.objects.exclude(master_key_id=new_master).values_list("master_key_id", flat=True))
    # Every other holder of master-key-wrapped data re-wraps too and names what it still needs,
    # so no master key that can open a stored share is retired.
    for rewrap in MASTER_KEY_USERS:
        still_used |= import_string(rewrap)(custody_=custody, new_master=new_master)
    retired = custody.retire(keep={new_master} | still_used)
    return {"master_key_id": new_master, "rewrapped": done - len(failed), "failed": len(failed), "retired": retired}
