"""Loops that run for a server process's life: started by the ASGI lifespan, ended at its shutdown.

The node's heartbeat (apps/cluster/heartbeat.py) and the dashboard's aggregates flusher
(apps/ops/aggregates.py) are such loops: one per process, on its event loop, and a last action
at a clean stop (remove the heartbeat, flush the last counts) through homepocket.shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

from homepocket.shutdown import on_shutdown


class ProcessLoop:
    def __init__(self, name: str):
        self.name = name
        self._task: asyncio.Task | None = None
        self._at_stop: Callable[[], None] | None = None
        self._hooked = False

    def start(self, run: Callable[[], Coroutine], *, at_stop: Callable[[], None]) -> None:
        """Run `run()` on the running event loop, unless this loop runs already; `at_stop` after it ends."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(run(), name=self.name)
        self._at_stop = at_stop
        if not self._hooked:
            on_shutdown(self.stop)
            self._hooked = True

    def stop(self) -> None:
        """Cancel the loop (from any thread) and run its last action; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            try:
                task.get_loop().call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # the event loop is closed already (interpreter exit): nothing runs the task
        at_stop, self._at_stop = self._at_stop, None  # once per start: the lifespan, then atexit
        if at_stop is not None:
            at_stop()
