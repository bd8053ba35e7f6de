"""A device as the server knows it: its key, the id it chose, and the book it belongs to (if any)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from homepocket_client.keys import DeviceKey
from homepocket_client.tokens import device_token_mint


@dataclass
class DeviceIdentity:
    """Mutable on purpose: create_book and pairing_verify fill `book_id` in once the server agrees.

    Its repr shows the public key only (DeviceKey's repr), so logging an identity leaks nothing.
    """

    key: DeviceKey
    device_id: uuid.UUID
    book_id: uuid.UUID | None = None
    name: str = "device"

    @classmethod
    def new(cls, name: str) -> DeviceIdentity:
        """A fresh device: a new key and a random id, the id the device will register under."""
        return cls(key=DeviceKey.generate(), device_id=uuid.uuid4(), name=name)

    def registration_token(self, *, lifetime_seconds: int = 300, now: int | float | None = None) -> str:
        """A token without `book_id`, proving possession of the key while registering it."""
        return device_token_mint(self.key, device_id=self.device_id, lifetime_seconds=lifetime_seconds, now=now)

    def book_token(self, *, lifetime_seconds: int = 300, now: int | float | None = None) -> str:
        """A token for this device's book; ValueError while the device belongs to no book."""
        if self.book_id is None:
            raise ValueError("this device has no book yet: create a book or pair it first")
        return device_token_mint(
            self.key, device_id=self.device_id, book_id=self.book_id, lifetime_seconds=lifetime_seconds, now=now
        )
