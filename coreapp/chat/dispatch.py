"""Handler layer hook-up: which service handles which server push."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shared.wire.frames import Frame

log = logging.getLogger("openprem.coreapp.chat")

F = TypeVar("F")
PushHandler = Callable[[Any], Awaitable[None]]


class PushDispatcher:
    """Maps a push frame type to its handler.  A handler acks the push itself, after its state is committed;
    an exception leaves it unacked (the network replays it after a reconnect)."""

    def __init__(self) -> None:
        self._handlers: dict[type[Frame], PushHandler] = {}

    def register(self, kind: type[F], handler: Callable[[F], Awaitable[None]]) -> None:
        self._handlers[kind] = handler  # type: ignore[index]

    async def dispatch(self, frame: Frame) -> None:
        handler = self._handlers.get(type(frame))
        if handler is None:
            log.warning("no handler for pushed %s; dropped", type(frame).__name__)
            return
        try:
            await handler(frame)
        except Exception:
            log.exception("handling pushed %s (id %d) failed; left unacked", type(frame).__name__, frame.id)
