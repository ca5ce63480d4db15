"""One OS process of a local deployment (``openprem.multiconnect``): started in its own session (so a signal
reaches it and its children, and the terminal's Ctrl-C reaches only the launcher), output appended to its log
file, and the signals the HA tests need: SIGKILL (a crash), SIGSTOP/SIGCONT (a hung node), SIGTERM (a clean stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.05


@dataclass
class NodeProcess:
    """A process started from ``argv`` with exactly ``env``; restartable (``start`` again after it ended)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal(self, signum: signal.Signals) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the process group: no cleanup of any kind, as in a crash (also of a paused process)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)  # a SIGKILLed process is reaped in milliseconds
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and leases but does nothing (a hung node)."""
        self._signal(signal.SIGSTOP)
        self.paused = self.alive()

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self._signal(signal.SIGCONT)
        self.paused = False

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code once the process ended within ``timeout_s``, else ``None`` (never blocks the loop)."""
        deadline = time.monotonic() + timeout_s
        while self.popen is not None:
            code = self.popen.poll()
            if code is not None:
                return code
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL_S)
        return None

    async def terminate(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (and SIGCONT, so a paused process can act on it), then SIGKILL after ``timeout_s``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)
            self.paused = False
            if await self.wait_exit(timeout_s) is None:
                self.kill()
        return self.popen.poll()

    def tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
