"""Handler layer hook-up: which service handles which server push."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.wire.frames import Frame

log = logging.getLogger("openprem.coreapp.chat")

F = TypeVar("F", bound=Frame)
Call = Callable[[], Awaitable[None]]
PushBinder = Callable[[Frame], Call]
GroupBinder = Callable[[list[Frame]], Call]
"""A registered handler with its frame type erased: checks the frame(s) are of its kind, returns the call to make
(and retry)."""
MAX_GROUP = 256
"""Most pushes of one kind handed to a group handler at once."""


RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Backoff between attempts at one push: rides out a database restart (~16 s) while keeping push order."""


class PushFailed(Exception):
    """A push still failed after every retry: the session must go, so the network replays it."""


class PushDispatcher:
    """Maps a push frame type to its handler.  A handler acks the push itself, after its state is committed.

    Handlers are idempotent (ids and receipt keys dedupe), so a failure — typically the database restarting —
    is retried in place, which keeps the pushes behind it in order.  A push that still fails raises
    ``PushFailed``: the connection then closes the session, and the network replays every unacked push after
    the reconnect.  Leaving it unacked on a live session would lose it (nothing replays it until then).
    """

    def __init__(self, retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S) -> None:
        self._handlers: dict[type[object], PushBinder] = {}  # keyed by frame type (``Frame`` is a union)
        self._groups: dict[type[object], GroupBinder] = {}
        self._retry_delays_s = retry_delays_s

    def register(self, kind: type[F], handler: Callable[[F], Awaitable[None]]) -> None:
        def bind(frame: Frame) -> Call:
            return functools.partial(handler, _of_kind(kind, frame))

        self._handlers[kind] = bind

    def register_group(self, kind: type[F], handler: Callable[[list[F]], Awaitable[None]]) -> None:
        """A handler for consecutive pushes of one kind at once (one transaction for all; it acks each)."""

        def bind(frames: list[Frame]) -> Call:
            typed = [_of_kind(kind, frame) for frame in frames]
            return lambda: handler(typed)

        self._groups[kind] = bind

    def groups(self, kind: type[Frame]) -> bool:
        return kind in self._groups

    async def dispatch(self, frame: Frame) -> None:
        await self.dispatch_group([frame])

    async def dispatch_group(self, frames: list[Frame]) -> None:
        """Handle consecutive pushes of one kind: with the group handler when there is one, else one by one."""
        kind = type(frames[0])
        group = self._groups.get(kind)
        if group is not None:
            await self._attempt(group(frames), kind.__name__, frames[0].id, len(frames))
            return
        handler = self._handlers.get(kind)
        if handler is None:
            log.warning("no handler for pushed %s; dropped", kind.__name__)
            return
        for frame in frames:
            await self._attempt(handler(frame), kind.__name__, frame.id, 1)

    async def _attempt(self, call: Call, name: str, first_id: int, count: int) -> None:
        what = f"{name} (id {first_id})" if count == 1 else f"{count} {name} (from id {first_id})"
        for attempt, delay in enumerate((*self._retry_delays_s, None), start=1):
            try:
                await call()
                return
            except Exception as exc:
                if delay is None:
                    log.exception("handling pushed %s failed %d times", what, attempt)
                    raise PushFailed(f"pushed {what}: {exc!r}") from exc
                log.warning("handling pushed %s failed (%r); retry in %.1fs", what, exc, delay)
                await asyncio.sleep(delay)


def _of_kind(kind: type[F], frame: Frame) -> F:
    """``frame`` as the ``kind`` it was dispatched under (``dispatch_group`` looks handlers up by its type)."""
    if not isinstance(frame, kind):
        raise TypeError(f"a {type(frame).__name__} push given to the {kind.__name__} handler")
    return frame
