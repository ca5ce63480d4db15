"""webapp's free-disk-space check: it writes uploads to the media volume itself, so it cannot rely on coreapp's
guard (another container, maybe another host) to stop them.

Same threshold as coreapp (``WA_DISK_MIN_FREE_MB``), on the two directories webapp writes: ``media`` (uploads)
and ``data`` (its key and certificates).  Measured every ``WA_DISK_CHECK_INTERVAL`` seconds and again, fresh,
before and during every upload.  While one is critical: ``POST /v1/media`` is refused with 1016 / HTTP 503 before
a byte is written (or mid-way, removing what was written); ``/v1/health`` adds the condition to coreapp's
``errors``; ``/metrics`` has ``webapp_disk_critical{dir}`` and ``webapp_disk_free_bytes{dir}``.  The ``errors``
webhook is coreapp's: it watches the same media volume.  A transition is one CRITICAL / INFO log line.

``min_free_bytes`` is a plain attribute, as in coreapp's guard, so a test (or an operator tool) can move it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import Gauge

from shared.disk import MB, DirState, mb, measure
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor
from webapp.envelope import HttpApiError

log = logging.getLogger("openprem.webapp.disk")

ERROR_CODE = ErrorCode.OVERLOADED


class WebDiskGuard:
    def __init__(
        self,
        dirs: Mapping[str, Path],
        min_free_mb: float,
        *,
        interval_s: float = 10.0,
        critical_gauge: Gauge | None = None,
        free_gauge: Gauge | None = None,
    ) -> None:
        self._dirs = dict(dirs)
        self.min_free_bytes = int(min_free_mb * MB)
        self.interval_s = interval_s
        self._critical_gauge = critical_gauge
        self._free_gauge = free_gauge
        self._states: dict[str, DirState] = {}
        self._lock = asyncio.Lock()

    def start(self, supervisor: TaskSupervisor) -> None:
        supervisor.spawn_forever("disk-check", self._cycle, restart_delay_s=self.interval_s)

    async def _cycle(self) -> None:
        await self.check()
        await asyncio.sleep(self.interval_s)

    async def check(self) -> dict[str, DirState]:
        """Measure now, log transitions, update the gauges; the new states."""
        async with self._lock:
            threshold = self.min_free_bytes
            for name, state in (await measure(self._dirs, threshold)).items():
                before = self._states.get(name)
                self._states[name] = state
                was_critical = before is not None and before.critical
                if state.critical and not was_critical:
                    log.critical(
                        "critical: %s; media uploads are refused until space returns", state.details(threshold)
                    )
                elif was_critical and not state.critical:
                    log.info(
                        "disk space back in the %s directory (%s MB free): uploads resume", name, mb(state.free_bytes)
                    )
                if self._critical_gauge is not None and self._free_gauge is not None:
                    self._critical_gauge.labels(name).set(1 if state.critical else 0)
                    self._free_gauge.labels(name).set(state.free_bytes)
            return dict(self._states)

    def errors(self) -> list[ApiError]:
        """webapp's entries for ``/v1/health`` ``errors`` (empty while every directory has room)."""
        threshold = self.min_free_bytes
        return [ApiError(ERROR_CODE, s.details(threshold)) for s in self._states.values() if s.critical]

    async def ensure_room(self, incoming: int = 0) -> None:
        """Measure now; 1016 / 503 if a directory is critical or ``incoming`` more bytes would make media so."""
        states = await self.check()
        threshold = self.min_free_bytes
        problems = [s.details(threshold) for s in states.values() if s.critical]
        media = states.get("media")
        if not problems and media is not None and media.free_bytes - incoming < threshold:
            problems.append(
                f"storing {mb(incoming)} MB would leave less than {mb(threshold)} MB free in the media directory "
                f"({mb(media.free_bytes)} MB free)"
            )
        if problems:
            details = "; ".join(problems)
            log.warning("media upload refused: %s", details)
            raise HttpApiError(ERROR_CODE, f"{details}; free some space and retry", status=ERROR_CODE.http_status)
