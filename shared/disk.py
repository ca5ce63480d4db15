"""Free disk space, measured the same way by webapp and coreapp against one threshold (``WA_DISK_MIN_FREE_MB``,
DESIGN §3), so both describe a full directory in the same words (health ``errors`` are de-duplicated by them).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("openprem.disk")

MB = 1024 * 1024


@dataclass(frozen=True)
class DirState:
    name: str  # "data" | "log" | "media": a bounded metric label
    path: Path
    free_bytes: int
    critical: bool

    def details(self, min_free_bytes: int) -> str:
        return (
            f"less than {mb(min_free_bytes)} MB free in the {self.name} directory {self.path} "
            f"({mb(self.free_bytes)} MB free)"
        )


def mb(n: int) -> str:
    return f"{n / MB:.0f}" if n >= 10 * MB or n % MB == 0 else f"{n / MB:.2f}"


def free_bytes(path: Path) -> int:
    """Free bytes (for unprivileged users) on the file system of ``path`` or of its nearest existing parent."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


async def measure(dirs: Mapping[str, Path], min_free_bytes: int) -> dict[str, DirState]:
    """Each directory now (``free_bytes`` in a thread); one that cannot be measured is left out, with a warning."""
    states: dict[str, DirState] = {}
    for name, path in dirs.items():
        try:
            free = await asyncio.to_thread(free_bytes, path)
        except OSError as exc:
            log.warning("disk check: cannot measure %s directory %s: %s", name, path, exc)
            continue
        states[name] = DirState(name, path, free, free < min_free_bytes)
    return states
