"""Loops that run for a server process's life: started by the ASGI lifespan, ended at its shutdown.

The node's heartbeat (apps/cluster/heartbeat.py) and the dashboard's aggregates flusher
(apps/ops/aggregates.py) are such loops: one per process, on its event loop, and a last action
at a clean stop (remove the heartbeat, flush the last counts) through homepocket.shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine

from asgiref.sync import sync_to_async

from homepocket.shutdown import on_shutdown

logger = logging.getLogger(__name__)


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

    def start_periodic(self, flush: Callable[[], object], *, every: Callable[[], float], what: str) -> None:
        """Run `flush` (blocking work, on a worker thread) every `every()` seconds and once more at a
        clean stop; a failing run is logged ("<what> not flushed") and the next one tries again."""

        async def run() -> None:
            while True:
                await asyncio.sleep(every())
                try:
                    await sync_to_async(flush, thread_sensitive=False)()
                except Exception as exc:  # its store or the database is down: the next run tries again
                    logger.warning(f"{what} not flushed", extra={"loop": self.name, "error_class": type(exc).__name__})

        def last() -> None:
            try:
                flush()
            except Exception as exc:
                logger.warning(f"{what}: last flush failed", extra={"loop": self.name, "error_class": type(exc).__name__})

        self.start(run, at_stop=last)

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
