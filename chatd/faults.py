"""Faults injected on demand through the admin API.

Each kind has a parser that validates its parameters; the active set is kept here and the parts that act on
a fault ask for it (the server for refused ports and maintenance kicks, sessions for the rest).  Listeners hear
about every change (and are awaited) so that a refused port's listener is closed before the admin API answers,
and reopened when the fault is cleared.  Counted faults (``count``) wear off after that many hits; timed ones
(``maintenance``) end by the sandbox clock, so advancing the clock ends them early.
Adding a kind means adding a dataclass, a parser and reading it where it acts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from shared.errors import ErrorCode


class FaultError(ValueError):
    """An unknown kind or a bad parameter; the admin API answers 400 with the message."""


@dataclass(frozen=True, slots=True)
class RefusePort:
    """Close the chat listener on ``port`` (the client must use the fallback port)."""

    kind: ClassVar[str] = "refuse_port"
    port: int


@dataclass(frozen=True, slots=True)
class DropAfter:
    """Close each business connection once chatd has written ``frames`` frames on it."""

    kind: ClassVar[str] = "drop_after"
    frames: int


@dataclass(frozen=True, slots=True)
class DelayAcks:
    """Answer each ``Send`` only after ``seconds`` (the message is accepted at once)."""

    kind: ClassVar[str] = "delay_acks"
    seconds: float


@dataclass(slots=True)
class LoseAcks:
    """Accept a ``Send`` but never answer it: the next ``count`` ones, or each with ``probability``."""

    kind: ClassVar[str] = "lose_acks"
    count: int = 0
    probability: float = 0.0


@dataclass(frozen=True, slots=True)
class DuplicatePushes:
    """Write every ``Deliver``/``Receipt`` twice (the client must store it once)."""

    kind: ClassVar[str] = "duplicate_pushes"


@dataclass(slots=True)
class CorruptFrame:
    """Replace the next ``count`` pushes by garbage bytes (well framed, undecodable); they stay unacked."""

    kind: ClassVar[str] = "corrupt_frame"
    count: int = 1


@dataclass(frozen=True, slots=True)
class StallOffline:
    """Hold the offline backlog and ``OfflineDone`` back for ``seconds`` after each login."""

    kind: ClassVar[str] = "stall_offline"
    seconds: float


@dataclass(slots=True)
class RefuseLogin:
    """Refuse the next ``count`` logins with ``code`` (1016 "System overloaded" unless told)."""

    kind: ClassVar[str] = "refuse_login"
    count: int = 1
    code: int = ErrorCode.OVERLOADED.code


@dataclass(frozen=True, slots=True)
class Maintenance:
    """API maintenance (error code 2): logins refused and live sessions kicked until ``until`` (sandbox time)."""

    kind: ClassVar[str] = "maintenance"
    seconds: float
    until: float = field(default=0.0, compare=False)


@dataclass(frozen=True, slots=True)
class SlowMedia:
    """The media host answers each upload and download (HTTPS) only after ``seconds``."""

    kind: ClassVar[str] = "slow_media"
    seconds: float


@dataclass(frozen=True, slots=True)
class ExpireMedia:
    """Every media blob counts as expired while this is set (404, removed when asked for), as after 14 days."""

    kind: ClassVar[str] = "expire_media"


Fault = (
    RefusePort | DropAfter | DelayAcks | LoseAcks | DuplicatePushes | CorruptFrame | StallOffline | RefuseLogin
) | (Maintenance | SlowMedia | ExpireMedia)


def _int(body: dict[str, Any], name: str, *, minimum: int = 1, default: int | None = None) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FaultError(f"'{name}' must be an integer >= {minimum}")
    return value


def _seconds(body: dict[str, Any], name: str = "seconds") -> float:
    value = body.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise FaultError(f"'{name}' must be a positive number of seconds")
    return float(value)


def _lose_acks(body: dict[str, Any]) -> LoseAcks:
    if "probability" in body:
        p = body["probability"]
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0 < p <= 1:
            raise FaultError("'probability' must be a number in (0, 1]")
        return LoseAcks(probability=float(p))
    return LoseAcks(count=_int(body, "count"))


_PARSERS: dict[str, Callable[[dict[str, Any]], Fault]] = {
    "refuse_port": lambda body: RefusePort(port=_int(body, "port")),
    "drop_after": lambda body: DropAfter(frames=_int(body, "frames", minimum=0)),
    "delay_acks": lambda body: DelayAcks(seconds=_seconds(body)),
    "lose_acks": _lose_acks,
    "duplicate_pushes": lambda body: DuplicatePushes(),
    "corrupt_frame": lambda body: CorruptFrame(count=_int(body, "count", default=1)),
    "stall_offline": lambda body: StallOffline(seconds=_seconds(body)),
    "refuse_login": lambda body: RefuseLogin(
        count=_int(body, "count", default=1), code=_int(body, "code", default=ErrorCode.OVERLOADED.code)
    ),
    "maintenance": lambda body: Maintenance(seconds=_seconds(body)),
    "slow_media": lambda body: SlowMedia(seconds=_seconds(body)),
    "expire_media": lambda body: ExpireMedia(),
}


def describe(fault: Fault) -> dict[str, Any]:
    return {"kind": fault.kind, **dataclasses.asdict(fault)}


class Faults:
    def __init__(self, now: Callable[[], float] | None = None) -> None:
        self._active: list[Fault] = []
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._now = now or (lambda: 0.0)

    def use_clock(self, now: Callable[[], float]) -> None:
        """Timed faults run on the sandbox clock (set once the clock exists)."""
        self._now = now

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
        """Activate a fault (in effect when this returns); a kind other than ``refuse_port`` replaces its like."""
        if isinstance(fault, Maintenance):
            fault = dataclasses.replace(fault, until=self._now() + fault.seconds)
        if not isinstance(fault, RefusePort):
            self._active = [f for f in self._active if f.kind != fault.kind]
        if fault not in self._active:
            self._active.append(fault)
        await self._notify()

    async def clear(self) -> None:
        self._active = []
        await self._notify()

    def active(self) -> list[Fault]:
        self._expire()
        return list(self._active)

    def _find(self, kind: type[Any]) -> Any:
        return next((f for f in self._active if isinstance(f, kind)), None)

    def _expire(self) -> None:
        now = self._now()
        self._active = [f for f in self._active if not (isinstance(f, Maintenance) and f.until <= now)]

    # --- what the parts ask -----------------------------------------------------------------------------------

    def refused_ports(self) -> set[int]:
        return {f.port for f in self._active if isinstance(f, RefusePort)}

    def drop_after(self) -> int | None:
        fault: DropAfter | None = self._find(DropAfter)
        return fault.frames if fault is not None else None

    def ack_delay(self) -> float:
        fault: DelayAcks | None = self._find(DelayAcks)
        return fault.seconds if fault is not None else 0.0

    def lose_ack(self) -> bool:
        """Whether to lose this ack (uses up one of a counted fault)."""
        fault: LoseAcks | None = self._find(LoseAcks)
        if fault is None:
            return False
        if fault.probability:
            return random.random() < fault.probability
        return self._use(fault)

    def duplicate_pushes(self) -> bool:
        return self._find(DuplicatePushes) is not None

    def corrupt_push(self) -> bool:
        fault: CorruptFrame | None = self._find(CorruptFrame)
        return fault is not None and self._use(fault)

    def offline_stall(self) -> float:
        fault: StallOffline | None = self._find(StallOffline)
        return fault.seconds if fault is not None else 0.0

    def refuse_login(self) -> int | None:
        """The error code to refuse this login with, if a ``refuse_login`` fault has one left."""
        fault: RefuseLogin | None = self._find(RefuseLogin)
        return fault.code if fault is not None and self._use(fault) else None

    def maintenance_left(self) -> float:
        """Seconds of API maintenance left (0: none)."""
        self._expire()
        fault: Maintenance | None = self._find(Maintenance)
        return max(0.0, fault.until - self._now()) if fault is not None else 0.0

    def media_delay(self) -> float:
        """Seconds the media host waits before answering (0: none)."""
        fault: SlowMedia | None = self._find(SlowMedia)
        return fault.seconds if fault is not None else 0.0

    def media_expired(self) -> bool:
        """Whether every media blob is to be treated as expired now."""
        return self._find(ExpireMedia) is not None

    def _use(self, fault: LoseAcks | CorruptFrame | RefuseLogin) -> bool:
        fault.count -= 1
        if fault.count <= 0:
            self._active.remove(fault)
        return True

    def on_change(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def _notify(self) -> None:
        for listener in list(self._listeners):
            await listener()
