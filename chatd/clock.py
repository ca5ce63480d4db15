"""Sandbox time: real time plus an offset that tests and demos move forward.

Everything in chatd that stamps or schedules reads this clock, so advancing it makes 24-hour windows, 14-day
media retention and 30-day offline storage testable in seconds.  Listeners (the push scheduler) are told when
time jumps so that timers already due fire at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    def __init__(self, offset_s: float = 0.0) -> None:
        self._offset = offset_s
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        """Sandbox wall-clock time, seconds since the epoch."""
        return time.time() + self._offset

    def timestamp(self) -> int:
        """Whole seconds, as frames carry them."""
        return int(self.now())

    @property
    def offset_s(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> float:
        """Move time forward (never back: timestamps must stay monotonic); returns the new offset."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds
        for listener in list(self._listeners):
            listener()
        return self._offset

    def on_advance(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)
