"""Supervised background tasks: every task is named, logged when it dies, and cancelled on shutdown.

Nothing in the project calls ``asyncio.create_task`` directly; it asks a ``TaskSupervisor``.  A task that
raises is logged with its name; with ``restart=True`` it is started again after a delay, so a periodic job
or a connection loop survives a bug in one iteration without taking the process down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("openprem.tasks")

T = TypeVar("T")


class TaskSupervisor:
    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a named task; a crash is logged, never lost."""
        if self._closing:
            coro.close()
            raise RuntimeError(f"supervisor {self._name} is shutting down; refused task {name}")
        task = asyncio.create_task(coro, name=f"{self._name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def spawn_forever(
        self, name: str, factory: Callable[[], Awaitable[Any]], restart_delay_s: float = 1.0
    ) -> asyncio.Task[Any]:
        """Run ``factory()`` again whenever it returns or raises, until shutdown."""

        async def loop() -> None:
            while True:
                try:
                    await factory()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("task %s:%s crashed; restarting in %.1fs", self._name, name, restart_delay_s)
                await asyncio.sleep(restart_delay_s)

        return self.spawn(name, loop())

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s died: %r", task.get_name(), exc, exc_info=exc)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Cancel every task and wait for them (bounded) so shutdown never hangs."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout_s)


async def finish_then_cancel(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end even if the caller is cancelled meanwhile, then let the cancellation through.

    For work that must never stop half-way: a database transaction abandoned mid-query (aiosqlite runs it in
    a thread) can keep its connection, and SQLite's write lock, busy long after the task is gone.  The caller
    still ends with ``CancelledError``; it just ends after the transaction has committed or rolled back.
    """
    inner = asyncio.ensure_future(coro)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(inner)
        except asyncio.CancelledError:
            if inner.done():  # the work itself was cancelled, not us
                raise
            cancelled = True
            continue
        except BaseException:
            if cancelled:
                raise asyncio.CancelledError from None
            raise
        if cancelled:
            raise asyncio.CancelledError
        return result


async def first_completed(*awaitables: Awaitable[Any]) -> None:
    """Wait until the first of ``awaitables`` finishes (a wake-up event or a timer, say); cancel the rest.

    Every helper task is awaited before returning, so none outlives the call.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
