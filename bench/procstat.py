"""CPU time and memory of processes, read from /proc (Linux only, no psutil).

A *watched* process is a name and a way to find its pids now (one pid for our processes; every backend for
PostgreSQL), so CPU deltas survive servers that fork per connection.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
PidFinder = Callable[[], list[int]]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (0.0 when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (``VmRSS``, ``VmHWM``); 0 when gone or absent."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def pids_by_comm(comm: str) -> list[int]:
    """Every pid whose /proc/<pid>/comm is ``comm`` (e.g. all PostgreSQL backends)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == comm:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def pidof(*names: str) -> list[int]:
    """``pidof`` for the first name that has a process (``mariadbd``, ``mysqld``)."""
    for name in names:
        try:
            out = subprocess.run(["pidof", name], capture_output=True, text=True, timeout=5, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.strip():
            return [int(p) for p in out.split()]
    return []


def fixed(pid: int | None) -> PidFinder:
    return lambda: [pid] if pid else []


@dataclass
class Watch:
    """Named processes: CPU snapshots, RSS samples and peaks."""

    finders: dict[str, PidFinder] = field(default_factory=dict)
    shared: set[str] = field(default_factory=set)
    """Names of servers other work may also use (the system MariaDB/PostgreSQL): their CPU is an upper bound."""

    def add(self, name: str, finder: PidFinder, *, shared: bool = False) -> None:
        self.finders[name] = finder
        if shared:
            self.shared.add(name)

    def remove(self, name: str) -> None:
        self.finders.pop(name, None)

    def cpu(self) -> dict[str, dict[int, float]]:
        """name -> pid -> CPU seconds so far."""
        return {name: {pid: cpu_seconds(pid) for pid in find()} for name, find in self.finders.items()}

    @staticmethod
    def cpu_delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        """CPU seconds each name used between two snapshots (pids born in between count from zero)."""
        out = {}
        for name, pids in after.items():
            old = before.get(name, {})
            out[name] = sum(max(0.0, t - old.get(pid, 0.0)) for pid, t in pids.items())
        return out

    def rss_mib(self) -> dict[str, float]:
        """name -> resident set size now (summed over its pids), MiB."""
        return {name: sum(status_kib(p, "VmRSS") for p in find()) / 1024 for name, find in self.finders.items()}

    def peak_mib(self) -> dict[str, float]:
        """name -> peak resident set size (VmHWM, summed over its pids), MiB."""
        return {name: sum(status_kib(p, "VmHWM") for p in find()) / 1024 for name, find in self.finders.items()}
