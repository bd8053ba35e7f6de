"""Keys made, unlocked and used inside the signer: coincurve (libsecp256k1) and envelope encryption.

A private key is stored as AES-256-GCM under its own data key (DEK), with the key id as associated
data; the DEK is wrapped by the master key (signer/custody.py). The plaintext key exists only here,
in the key cache, for at most the hard TTL.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from typing import Callable
from uuid import UUID

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_recoverable, recoverable_convert
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from signer import keycache
from signer.custody import Custody, CustodyError, CustodyUnavailable
from signer.keycache import DEK_POLICY, KEY_POLICY, ExpiringCache, Policy, State
from signer.protocol import WrappedKey

NONCE_BYTES = 12
# How long a sign waits for an unlock it started before answering UNLOCK_REQUIRED.
UNLOCK_BUDGET_SECONDS = 0.0025


class UnlockPending(Exception):
    """The key is being unlocked; ask again in a moment."""


class UnwrapFailed(Exception):
    """The wrapped material does not open for this key id."""


class CustodyDown(Exception):
    """The master key's custodian is unreachable (KMS down)."""


class RngSelfCheckFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Signature:
    compact: bytes  # r ‖ s, 64 bytes, low-S (libsecp256k1 normalises)
    recovery_id: int
    der: bytes


def rng_self_check(randbytes: Callable[[int], bytes] = os.urandom) -> None:
    """Refuse to run on a broken RNG: distinct non-constant draws, and a key pair that signs and verifies."""
    draws = [randbytes(32) for _ in range(4)]
    if len(set(draws)) != len(draws) or any(len(d) != 32 or len(set(d)) < 4 for d in draws):
        raise RngSelfCheckFailed("the random source repeats or is constant")
    keys = [PrivateKey(randbytes(32)) for _ in range(2)]
    if keys[0].secret == keys[1].secret:
        raise RngSelfCheckFailed("two fresh keys are equal")
    digest = hashlib.sha256(draws[0]).digest()
    signature = keys[0].sign_recoverable(digest, hasher=None)
    if PublicKey.from_signature_and_message(signature, digest, hasher=None) != keys[0].public_key:
        raise RngSelfCheckFailed("a test signature does not recover to its key")


def seal_private_key(secret: bytes, dek: bytes, key_id: UUID) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(dek).encrypt(nonce, secret, key_id.bytes)


def open_private_key(wrapped_key: bytes, dek: bytes, key_id: UUID) -> bytes:
    return AESGCM(dek).decrypt(wrapped_key[:NONCE_BYTES], wrapped_key[NONCE_BYTES:], key_id.bytes)


class Engine:
    def __init__(
        self,
        custody: Custody,
        *,
        key_policy: Policy = KEY_POLICY,
        dek_policy: Policy = DEK_POLICY,
        unlock_budget: float = UNLOCK_BUDGET_SECONDS,
        on_load: Callable[[str, str, str, float], None] | None = None,
    ):
        self.custody = custody
        self.unlock_budget = unlock_budget
        self.deks = ExpiringCache(dek_policy, self._load_dek, name="dek", on_load=self._observer("dek", on_load))
        self.keys = ExpiringCache(key_policy, self._load_key, name="key", on_load=self._observer("key", on_load))

    @staticmethod
    def _observer(cache: str, on_load):
        if on_load is None:
            return None
        return lambda kind, outcome, seconds: on_load(cache, kind, outcome, seconds)

    # -- loads (run in the background, single flight per key) -----------------------------------

    async def _load_dek(self, key_id: UUID, wrapped_dek: bytes) -> bytes:
        # KMS is a network call and the local file a disk read on rotation: off the event loop.
        return await asyncio.to_thread(self.custody.unwrap, wrapped_dek, context=key_id.bytes)

    async def _dek(self, key_id: UUID, wrapped_dek: bytes) -> bytes:
        state, entry = self.deks.lookup(key_id)
        if state is State.WARM:
            return entry.value
        if state is State.COOL:
            self.deks.refresh_in_background(key_id, entry, wrapped_dek)
            return entry.value
        return (await self.deks.load(key_id, wrapped_dek)).value

    async def _load_key(self, key_id: UUID, material: WrappedKey) -> PrivateKey:
        dek = await self._dek(key_id, material.wrapped_dek)
        try:
            return PrivateKey(open_private_key(material.wrapped_key, dek, key_id))
        except (InvalidTag, ValueError):
            raise CustodyError("wrapped private key does not open") from None

    # -- operations -----------------------------------------------------------------------------

    async def create(self, key_id: UUID) -> tuple[bytes, WrappedKey, str]:
        """A new key pair: (compressed public key, wrapped material, master key id). Cached WARM."""
        private = PrivateKey()
        dek = AESGCM.generate_key(bit_length=256)
        wrapped_key = seal_private_key(private.secret, dek, key_id)
        try:
            wrapped_dek, master_key_id = await asyncio.to_thread(self.custody.wrap, dek, context=key_id.bytes)
        except CustodyUnavailable as exc:
            raise CustodyDown(str(exc)) from None
        self.deks.put(key_id, dek)
        self.keys.put(key_id, private)
        return private.public_key.format(compressed=True), WrappedKey(wrapped_dek, wrapped_key), master_key_id

    def sign_cached(self, key_id: UUID, digest: bytes, material: WrappedKey) -> Signature | None:
        """The fast path, no await: a signature from a WARM or COOL key, or None if it must be unlocked."""
        state, entry = self.keys.lookup(key_id)
        if state is State.INVALID:
            return None
        if state is State.COOL:
            self.keys.refresh_in_background(key_id, entry, material)
        return self.sign_entry(entry, digest)

    async def sign(self, key_id: UUID, digest: bytes, material: WrappedKey) -> Signature:
        signature = self.sign_cached(key_id, digest, material)
        if signature is not None:
            return signature
        task = self.keys.load(key_id, material, kind="unlock")
        try:
            entry = await asyncio.wait_for(asyncio.shield(task), self.unlock_budget)
        except TimeoutError:
            raise UnlockPending() from None
        except CustodyError:
            raise UnwrapFailed() from None
        except CustodyUnavailable as exc:
            raise CustodyDown(str(exc)) from None
        return self.sign_entry(entry, digest)

    @staticmethod
    def sign_entry(entry: keycache.Entry, digest: bytes) -> Signature:
        entry.uses += 1
        recoverable = entry.value.sign_recoverable(digest, hasher=None)  # RFC 6979 nonces
        der = cdata_to_der(recoverable_convert(deserialize_recoverable(recoverable)))
        return Signature(recoverable[:64], recoverable[64], der)

    def state_counts(self) -> dict[str, dict[str, int]]:
        return {"key": self.keys.state_counts(), "dek": self.deks.state_counts()}

    def evict_expired(self) -> None:
        self.keys.evict_expired()
        self.deks.evict_expired()
