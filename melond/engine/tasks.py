"""Background tasks with kept references: the event loop holds tasks only weakly, so one
started and dropped can be collected mid-run; a failure is logged, never lost."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from melond.errors import NotLeader

log = logging.getLogger("melond.engine")


class Tasks:
    def __init__(self) -> None:
        self._running: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), NotLeader):  # stepping down: the database refused it, as it must
            log.warning("not done: %s", task.exception())
            return
        log.error("background task failed", exc_info=task.exception())

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the tasks running now, and those they start, to finish (or the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._running:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return
            await asyncio.wait(list(self._running), timeout=left)


async def every(interval: float, stopping: asyncio.Event, work: Callable[[], Awaitable[object]], *,
                first: bool = False) -> None:
    """`work` every `interval` seconds until `stopping` is set (`first`: once at the start too);
    a failure is logged and the next round tries again."""
    if first and not stopping.is_set():
        await _once(work)
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), interval)
        except TimeoutError:
            await _once(work)


async def _once(work: Callable[[], Awaitable[object]]) -> None:
    try:
        await work()
    except Exception:  # noqa: BLE001 - one failed round must not end the rounds
        log.exception("periodic work failed", extra={"work": getattr(work, "__qualname__", repr(work))})
