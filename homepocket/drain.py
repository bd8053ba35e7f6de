"""Whether this node is draining (SIGTERM received): /health answers 503 then.

homepocket.server, which receives the signal, tells its worker processes by creating the file
named in HOMEPOCKET_DRAIN_FILE; a process can also be told directly (drain_begin).
"""

from __future__ import annotations

import os
import threading

_draining = threading.Event()


def drain_begin() -> None:
    _draining.set()


def drain_watchable() -> bool:
    """Whether a drain can begin without drain_begin() being called here (a supervisor's drain file)."""
    return bool(os.environ.get("HOMEPOCKET_DRAIN_FILE"))


def drain_active() -> bool:
    if _draining.is_set():
        return True
    path = os.environ.get("HOMEPOCKET_DRAIN_FILE")
    if path and os.path.exists(path):
        _draining.set()  # draining never ends in a process: it is about to stop
        return True
    return False
