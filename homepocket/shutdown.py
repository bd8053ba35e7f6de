"""Work to finish when a server process stops cleanly (the ASGI lifespan's shutdown, or exit).

ASGI servers may end a worker without running `atexit` (granian's workers do), but they send
`lifespan.shutdown` on a graceful stop: apps register here what must not be lost then (the audit
buffer's last events), and the lifespan handler runs it. Each hook also stays safe to run twice.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_hooks: list[Callable[[], None]] = []


def on_shutdown(hook: Callable[[], None]) -> None:
    """Run `hook` at a clean stop of this process: lifespan shutdown, or interpreter exit."""
    _hooks.append(hook)
    atexit.register(hook)


def run_shutdown_hooks() -> None:
    for hook in _hooks:
        try:
            hook()
        except Exception:
            logger.exception("shutdown hook failed", extra={"hook": getattr(hook, "__qualname__", repr(hook))})
