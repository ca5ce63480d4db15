"""Handler layer hook-up: which service handles which server push."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.wire.frames import Frame

log = logging.getLogger("openprem.coreapp.chat")

F = TypeVar("F")
PushHandler = Callable[[Any], Awaitable[None]]


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
        self._handlers: dict[type[Frame], PushHandler] = {}
        self._retry_delays_s = retry_delays_s

    def register(self, kind: type[F], handler: Callable[[F], Awaitable[None]]) -> None:
        self._handlers[kind] = handler  # type: ignore[index]

    async def dispatch(self, frame: Frame) -> None:
        handler = self._handlers.get(type(frame))
        if handler is None:
            log.warning("no handler for pushed %s; dropped", type(frame).__name__)
            return
        name = type(frame).__name__
        for attempt, delay in enumerate((*self._retry_delays_s, None), start=1):
            try:
                await handler(frame)
                return
            except Exception as exc:
                if delay is None:
                    log.exception("handling pushed %s (id %d) failed %d times", name, frame.id, attempt)
                    raise PushFailed(f"pushed {name} {frame.id}: {exc!r}") from exc
                log.warning("handling pushed %s (id %d) failed (%r); retry in %.1fs", name, frame.id, exc, delay)
                await asyncio.sleep(delay)
