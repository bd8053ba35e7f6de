"""The share delivery API calls as the family's devices make them (Django's test client)."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

from coincurve import PrivateKey

SHARES = "/api/v1/backup/shares"
REQUEST = "/api/v1/backup/delivery/request"
CONFIRM = "/api/v1/backup/delivery/confirm"
STATUS = "/api/v1/backup/delivery/status/{}"
SERVER_KEY = "/api/v1/backup/delivery/server_key"


def post(client, path, body, persona):
    return client.post(path, data=json.dumps(body), content_type="application/json", **persona.auth())


def deposit(client, depositor, recipient, share: bytes, *, backup_id=None):
    backup_id = backup_id or uuid.uuid4()
    body = {"backup_id": str(backup_id), "recipient_device_id": str(recipient.device_id),
            "share": base64.b64encode(share).decode()}  # fmt: skip
    return post(client, SHARES, body, depositor)


def request_body(backup_id, client_key: PrivateKey, *, timestamp=None, nonce=None) -> dict:
    return {
        "backup_id": str(backup_id),
        "client_public_key": client_key.public_key.format().hex(),
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "nonce": nonce or base64.urlsafe_b64encode(os.urandom(18)).decode(),
    }


def confirm_body(delivery_id, share_sha256: str, ok: bool = True) -> dict:
    return {"delivery_id": str(delivery_id), "received_successfully": ok, "share_sha256": share_sha256}
