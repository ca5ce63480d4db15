"""Faults injected on demand through the admin API.

Each kind has a parser that validates its parameters; the active set is kept here and the parts that act on
a fault ask for it (the server for refused ports, sessions for ``drop_after``).  Listeners hear about every
change (and are awaited) so that a refused port's listener is closed before the admin API answers, and
reopened when the fault is cleared.
Adding a kind means adding a parser and reading it where it acts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


class FaultError(ValueError):
    """An unknown kind or a bad parameter; the admin API answers 400 with the message."""


@dataclass(frozen=True, slots=True)
class RefusePort:
    """Close the chat listener on ``port`` (the client must use the fallback port)."""

    port: int


@dataclass(frozen=True, slots=True)
class DropAfter:
    """Close each business connection once chatd has written ``frames`` frames on it."""

    frames: int


Fault = RefusePort | DropAfter


def _positive_int(body: dict[str, Any], name: str, *, minimum: int = 1) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FaultError(f"'{name}' must be an integer >= {minimum}")
    return value


_PARSERS: dict[str, Callable[[dict[str, Any]], Fault]] = {
    "refuse_port": lambda body: RefusePort(port=_positive_int(body, "port")),
    "drop_after": lambda body: DropAfter(frames=_positive_int(body, "frames", minimum=0)),
}


def describe(fault: Fault) -> dict[str, Any]:
    if isinstance(fault, RefusePort):
        return {"kind": "refuse_port", "port": fault.port}
    return {"kind": "drop_after", "frames": fault.frames}


class Faults:
    def __init__(self) -> None:
        self._active: list[Fault] = []
        self._listeners: list[Callable[[], Awaitable[None]]] = []

    @staticmethod
    def kinds() -> list[str]:
        return sorted(_PARSERS)

    def parse(self, body: dict[str, Any]) -> Fault:
        kind = body.get("kind")
        parser = _PARSERS.get(kind) if isinstance(kind, str) else None
        if parser is None:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(self.kinds())}")
        return parser(body)

    async def add(self, fault: Fault) -> None:
        """Activate a fault (in effect when this returns); a new ``drop_after`` replaces the old one."""
        if isinstance(fault, DropAfter):
            self._active = [f for f in self._active if not isinstance(f, DropAfter)]
        if fault not in self._active:
            self._active.append(fault)
        await self._notify()

    async def clear(self) -> None:
        self._active = []
        await self._notify()

    def active(self) -> list[Fault]:
        return list(self._active)

    def refused_ports(self) -> set[int]:
        return {f.port for f in self._active if isinstance(f, RefusePort)}

    def drop_after(self) -> int | None:
        for fault in self._active:
            if isinstance(fault, DropAfter):
                return fault.frames
        return None

    def on_change(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def _notify(self) -> None:
        for listener in list(self._listeners):
            await listener()
