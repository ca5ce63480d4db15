"""One progress line for long terminal work (the bench, the chaos run, ``openprem backup``/``restore``).

On a terminal (the stream's ``isatty()``) ``update`` rewrites one line in place with ``\\r`` and clears what a
longer line left behind, at most every ``min_interval_s``; ``done`` ends the line.  Anywhere else (a pipe, a file,
CI) it writes nothing at all: logs and ``| tail -1`` stay as they were.  The caller formats the figures
(``count`` helps); the elapsed seconds are added at the end:

    progress = Progress("bench")
    progress.update(f"sent {count(4200)}/{count(10000)}  delivered {count(4100)}")   # bench: sent 4,200/10,000 … 37 s
    progress.done()

``async with progress.ticking(render):`` refreshes the line from ``render()`` every ``period_s`` while the block
runs (one named task, cancelled when the block ends; ``render`` runs on the loop, so it may read the caller's
counters), then ends the line with a last ``render()`` (or removes it: ``keep=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TextIO

__all__ = ["Progress", "count"]

DEFAULT_INTERVAL_S = 0.2
DEFAULT_WIDTH = 120


def count(n: int) -> str:
    """``4200`` → ``4,200``."""
    return f"{n:,}"


class Progress:
    """A progress line on ``stream`` (standard error by default); silent unless the stream is a terminal."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        min_interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        width: int = DEFAULT_WIDTH,
    ) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._min_interval_s = min_interval_s
        self._last_write: float | None = None
        self._shown = 0  # length of the line on screen now
        self._width = width
        self.enabled = _isatty(self._stream)

    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def update(self, text: str, *, force: bool = False) -> None:
        """Show ``<label>: <text>  <elapsed> s`` in place (throttled unless ``force``)."""
        if not self.enabled:
            return
        now = self._clock()
        if not force and self._last_write is not None and now - self._last_write < self._min_interval_s:
            return
        self._last_write = now
        line = f"{self._label}: {text}  {now - self._started:.0f} s"[: self._width]
        pad = " " * max(0, self._shown - len(line))
        self._write(f"\r{line}{pad}")
        self._shown = len(line) + len(pad)  # what is on screen now, the blanks included

    def clear(self) -> None:
        """Remove the line (before the caller prints something else on the terminal)."""
        if self.enabled and self._shown:
            self._write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def done(self, text: str | None = None) -> None:
        """Finish: show ``text`` (if any) one last time and end the line; nothing on a non-terminal."""
        if not self.enabled:
            return
        if text is not None:
            self.update(text, force=True)
        if self._shown:
            self._write("\n")
            self._shown = 0

    @contextlib.asynccontextmanager
    async def ticking(
        self, render: Callable[[], str], period_s: float = 0.5, *, keep: bool = True
    ) -> AsyncIterator[Progress]:
        """Refresh from ``render()`` every ``period_s`` while the block runs, then ``done(render())`` (``keep``) or
        remove the line (the caller prints its own result)."""
        if not self.enabled:
            yield self
            return
        task = asyncio.get_running_loop().create_task(self._tick(render, period_s), name=f"progress-{self._label}")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.wait([task])  # the task's own CancelledError stays in it; ours still propagates
            if keep:
                self.done(render())
            else:
                self.clear()

    async def _tick(self, render: Callable[[], str], period_s: float) -> None:
        while True:
            self.update(render(), force=True)
            await asyncio.sleep(period_s)

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # the terminal went away (closed, SIGHUP): progress is not worth a failure
            self.enabled = False


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
