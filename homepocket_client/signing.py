"""Signing for service callers (`Authorization: Api-Key …`): create keys, sign 32-byte digests.

    from homepocket_client import HomePocketClient, SigningClient

    with HomePocketClient("http://127.0.0.1:8000") as http:
        signing = SigningClient(http, api_key="hp_…")
        key = signing.create_key()
        sig = signing.sign(key.key_id, digest)   # retries UNLOCK_REQUIRED within 200 ms

A key that is not loaded in its signer yet answers 503 UNLOCK_REQUIRED with a wait of 50-200 ms;
sign() waits that long and asks again, until UNLOCK_RETRY_BUDGET_SECONDS have passed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from homepocket_client.client import HomePocketClient
from homepocket_client.errors import ServiceUnavailable

UNLOCK_RETRY_BUDGET_SECONDS = 0.200
DEFAULT_UNLOCK_WAIT_SECONDS = 0.100


@dataclass(frozen=True)
class SigningKey:
    key_id: uuid.UUID
    public_key: bytes  # 33-byte compressed secp256k1
    address: str  # EIP-55


@dataclass(frozen=True)
class Signature:
    signature: bytes  # r ‖ s, 64 bytes, low-S
    recovery_id: int
    der: bytes


class SigningClient:
    def __init__(self, http: HomePocketClient, *, api_key: str, unlock_budget: float = UNLOCK_RETRY_BUDGET_SECONDS):
        self.http = http
        self.unlock_budget = unlock_budget
        self._headers = {"Authorization": f"Api-Key {api_key}"}

    def create_key(self) -> SigningKey:
        data = self.http.request("POST", "/api/v1/signing/keys", headers=self._headers)
        return SigningKey(uuid.UUID(data["key_id"]), bytes.fromhex(data["public_key"]), data["address"])

    def sign(self, key_id: uuid.UUID | str, digest: bytes) -> Signature:
        """Sign a 32-byte digest; UNLOCK_REQUIRED is retried after its wait within the budget, then raised."""
        if len(digest) != 32:
            raise ValueError("sign() takes a 32-byte digest, never a message: hash it first")
        body = {"key_id": str(key_id), "digest": digest.hex()}
        deadline = time.monotonic() + self.unlock_budget
        while True:
            try:
                data = self.http.request("POST", "/api/v1/signing/sign", json=body, headers=self._headers)
            except ServiceUnavailable as error:
                if error.code != "UNLOCK_REQUIRED":
                    raise
                wait = error.details.get("retry_after_ms", DEFAULT_UNLOCK_WAIT_SECONDS * 1000) / 1000
                if time.monotonic() + wait > deadline:
                    raise
                time.sleep(wait)
                continue
            return Signature(bytes.fromhex(data["signature"]), data["recovery_id"], bytes.fromhex(data["der"]))
