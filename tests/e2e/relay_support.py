"""Shared helpers of the relay's end-to-end tests: books of paired devices, frames, close codes."""

from __future__ import annotations

import asyncio
import base64
import os

from websockets.exceptions import ConnectionClosed

from homepocket_client import DeviceIdentity, HomePocketClient


def book_of(api: HomePocketClient, size: int, name: str = "phone") -> list[DeviceIdentity]:
    """`size` devices in one new book: the first creates it, the others pair in with codes."""
    founder = DeviceIdentity.new(f"{name} 0")
    api.create_book(founder)
    devices = [founder]
    for index in range(1, size):
        joiner = DeviceIdentity.new(f"{name} {index}")
        api.pairing_verify(joiner, api.pairing_generate(founder).short_code)
        devices.append(joiner)
    return devices


def ciphertext(size: int = 48) -> str:
    """Random bytes standing for an encrypted CRDT update, as the base64 the relay carries."""
    return base64.b64encode(os.urandom(size)).decode()


async def next_frame(socket, *, skip_presence: bool = True, timeout: float = 10.0) -> dict:
    """The socket's next frame (presence frames skipped unless asked for)."""
    while True:
        frame = await asyncio.wait_for(socket.receive(), timeout)
        if not (skip_presence and frame["type"] == "presence"):
            return frame


async def close_code(socket, timeout: float = 10.0) -> int:
    """Read until the server closes the socket; the code it closed with."""
    try:
        while True:
            await asyncio.wait_for(socket.receive(), timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else closed.code
