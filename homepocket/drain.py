"""Whether this process is draining: set on SIGTERM, read by /health."""

from __future__ import annotations

import threading

_draining = threading.Event()


def drain_begin() -> None:
    _draining.set()


def drain_active() -> bool:
    return _draining.is_set()
