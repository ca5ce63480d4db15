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

1016 was chosen over 1000/1014 because the condition is temporary and the client should retry, like overload.
``min_free_bytes`` is a plain attribute so an operator tool (or a test) can change the threshold at run time.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreapp.webhooks import payloads
from shared.bus.contract.health import CriticalError
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.disk")

MB = 1024 * 1024
ERROR_CODE = ErrorCode.OVERLOADED

ReportError = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class DirState:
    name: str  # "data" | "log" | "media": a bounded metric label
    path: Path
    free_bytes: int
    critical: bool

    def details(self, min_free_bytes: int) -> str:
        return (
            f"less than {_mb(min_free_bytes)} MB free in the {self.name} directory {self.path} "
            f"({_mb(self.free_bytes)} MB free)"
        )


def _mb(n: int) -> str:
    return f"{n / MB:.0f}" if n >= 10 * MB or n % MB == 0 else f"{n / MB:.2f}"


def free_bytes(path: Path) -> int:
    """Free bytes (for unprivileged users) on the file system of ``path`` or of its nearest existing parent."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


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
            for name, path in self._dirs.items():
                try:
                    free = await asyncio.to_thread(free_bytes, path)
                except OSError as exc:
                    log.warning("disk guard: cannot measure %s directory %s: %s", name, path, exc)
                    continue
                state = DirState(name, path, free, free < threshold)
                before = self._states.get(name)
                self._states[name] = state
                was_critical = before is not None and before.critical
                if state.critical and not was_critical:
                    details = state.details(threshold)
                    log.critical("critical: %s; sending is refused until space returns", details)
                    await self._report(details)
                elif was_critical and not state.critical:
                    log.info(
                        "disk space back in the %s directory %s (%s MB free): sending resumes", name, path, _mb(free)
                    )
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
