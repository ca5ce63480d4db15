"""The free-disk-space guard (DESIGN §3): less than ``WA_DISK_MIN_FREE_MB`` free in the data, log or media
directory is a critical error.

Every ``WA_DISK_CHECK_INTERVAL`` seconds (``shutil.disk_usage`` in a thread, on the directory or, before it
exists, its nearest existing parent) each directory is classified.  On a transition into the critical state
the guard logs CRITICAL and queues one ``errors`` webhook for that directory; on the way back it logs INFO.  No
restart is needed either way.  While any directory is critical:

- ``health.get`` carries ``errors`` (``[{"code":1016,"title":"System overloaded","details":"..."}]``), which
  webapp passes through as ``{"health":{"gateway_status":…,"errors":[…]}}`` (absent when all is well, so the
  reference shape is unchanged);
- ``messages.send`` is refused with 1016 "System overloaded" (HTTP 503: retry later) naming the directory and
  the free space, before anything is written;
- ``stats.app`` reports ``disk_critical{dir=…}`` 1 and ``disk_free_bytes{dir=…}``.

While the data or media directory is critical, inbound messages are *held*: ``wait_for_room`` blocks the push
handler before it decrypts, downloads or stores anything, so the push stays unacked and the network keeps it
(also across a reconnect, which cancels the wait); the next check that finds room releases it, and it is stored
and acked as usual.  ``inbound_paused`` is 1 in ``stats.app`` meanwhile.  Nothing unstored is ever acked.

1016 was chosen over 1000/1014 because the condition is temporary and the client should retry, like overload.
``min_free_bytes`` is a plain attribute so an operator tool (or a test) can change the threshold at run time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from coreapp.webhooks import payloads
from shared.bus.contract.health import CriticalError
from shared.disk import MB, DirState, free_bytes, mb, measure
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.disk")

__all__ = ["MB", "DirState", "DiskGuard", "free_bytes"]

ERROR_CODE = ErrorCode.OVERLOADED
INBOUND_DIRS = frozenset({"data", "media"})
"""Where inbound messages and their auto-downloaded media are written: while one is critical they are held."""

ReportError = Callable[[dict[str, Any]], Awaitable[None]]


class DiskGuard:
    def __init__(
        self,
        dirs: Mapping[str, Path],
        min_free_mb: float,
        *,
        interval_s: float = 10.0,
        report_error: ReportError | None = None,
    ) -> None:
        self._dirs = dict(dirs)
        self.min_free_bytes = int(min_free_mb * MB)
        self.interval_s = interval_s
        self._report_error = report_error
        self._states: dict[str, DirState] = {}
        self._check_lock = asyncio.Lock()
        self._room = asyncio.Event()  # set while inbound writes may go on (no INBOUND_DIRS critical)
        self._room.set()
        self.inbound_held = 0
        """Inbound pushes waiting in ``wait_for_room`` now (the ``inbound_paused`` metric)."""

    # --- checking -------------------------------------------------------------------------------------------

    def start(self, supervisor: TaskSupervisor) -> None:
        supervisor.spawn_forever("disk-guard", self._cycle, restart_delay_s=self.interval_s)

    async def _cycle(self) -> None:
        await self.check()
        await asyncio.sleep(self.interval_s)

    async def check(self) -> dict[str, DirState]:
        """Measure every directory now, act on transitions, and return the new states."""
        async with self._check_lock:
            threshold = self.min_free_bytes
            for name, state in (await measure(self._dirs, threshold)).items():
                before = self._states.get(name)
                self._states[name] = state
                was_critical = before is not None and before.critical
                if state.critical and not was_critical:
                    details = state.details(threshold)
                    held = " and inbound messages are held (not acked)" if name in INBOUND_DIRS else ""
                    log.critical("critical: %s; sending is refused%s until space returns", details, held)
                    await self._report(details)
                elif was_critical and not state.critical:
                    log.info(
                        "disk space back in the %s directory %s (%s MB free): sending resumes",
                        name,
                        state.path,
                        mb(state.free_bytes),
                    )
            if any(s.critical for s in self._states.values() if s.name in INBOUND_DIRS):
                self._room.clear()
            else:
                self._room.set()
            return dict(self._states)

    async def _report(self, details: str) -> None:
        if self._report_error is None:
            return
        try:
            await self._report_error(payloads.error(ERROR_CODE.code, ERROR_CODE.title, details))
        except Exception:  # a full disk may well make this fail too; the log and health still say it
            log.exception("disk guard: could not queue the errors webhook")

    # --- views ----------------------------------------------------------------------------------------------

    @property
    def states(self) -> dict[str, DirState]:
        return dict(self._states)

    @property
    def critical(self) -> list[DirState]:
        return [s for s in self._states.values() if s.critical]

    def errors(self) -> list[CriticalError]:
        """The ``errors`` entries for ``health.get`` (empty when every directory has room)."""
        threshold = self.min_free_bytes
        return [
            CriticalError(code=ERROR_CODE.code, title=ERROR_CODE.title, details=s.details(threshold))
            for s in self.critical
        ]

    def ensure_room(self) -> None:
        """Raise 1016 while a directory is critical (called by ``messages.send`` before it writes)."""
        critical = self.critical
        if critical:
            details = "; ".join(s.details(self.min_free_bytes) for s in critical)
            log.warning("messages.send refused: %s", details)
            raise ApiError(ERROR_CODE, f"{details}; free some space and retry")

    async def wait_for_room(self) -> None:
        """Return at once while the data and media directories have room; else wait (unacked) until they do.

        Called by the inbound handler before it writes anything.  Cancelled with the chat session: the push stays
        unacked and the network delivers it again after the reconnect.
        """
        if self._room.is_set():
            return
        self.inbound_held += 1
        if self.inbound_held == 1:
            details = "; ".join(s.details(self.min_free_bytes) for s in self.critical if s.name in INBOUND_DIRS)
            log.warning("inbound messages held (not acked, the network keeps them): %s", details)
        try:
            await self._room.wait()
        finally:
            self.inbound_held -= 1
        if self.inbound_held == 0:
            log.info("disk space back: inbound messages resume")
