"""A private MariaDB server for the chaos run, restartable on the same port (like ``PrivateMosquitto``).

The machine's shared MariaDB (127.0.0.1:3306) serves every other test, so the chaos run never restarts it: it
initialises its own data directory with ``mariadb-install-db`` (root over TCP, empty password) and runs its own
``mariadbd`` on a free loopback port.  ``stop()`` is SIGTERM (a clean shutdown); ``kill()`` is SIGKILL (a crash,
InnoDB recovers at the next start); ``start()`` after either brings it back on the same port with its data.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.ports import free_port


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            if Path(folder, name).exists():
                return str(Path(folder, name))
    return None


def mariadb_available() -> str | None:
    """None when a private server can be run here, else why not."""
    if _binary("mariadbd", "mysqld") is None:
        return "mariadbd is not installed (apt-get install mariadb-server)"
    if _binary("mariadb-install-db", "mysql_install_db") is None:
        return "mariadb-install-db is not installed"
    return None


class _PortTaken(Exception):
    pass


class PrivateMariaDB:
    """One private ``mariadbd`` process with its data directory under ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        reason = mariadb_available()
        if reason is not None:
            raise RuntimeError(reason)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.user = "root"
        self.password = ""
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.socket = workdir / "mariadb.sock"
        self.log_file = workdir / "mariadb.err"
        self.server = _binary("mariadbd", "mysqld") or "mariadbd"
        self.install_db = _binary("mariadb-install-db", "mysql_install_db") or "mariadb-install-db"
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False

    def install(self) -> None:
        """Create the system tables once (about half a second)."""
        if (self.datadir / "mysql").exists():
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        done = subprocess.run(argv, capture_output=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout.decode()}{done.stderr.decode()}")

    def start(self, timeout_s: float = 60.0) -> None:
        """Start and wait until it greets clients.  The first start moves to another free port if the one picked
        was taken meanwhile; a restart keeps its port (the apps reconnect to it)."""
        for attempt in range(5):
            try:
                self._start(timeout_s)
            except _PortTaken:
                if self._started_once or attempt == 4:
                    raise RuntimeError(f"port {self.port} is taken\n{self.logs()[-2000:]}") from None
                self.port = free_port()
            else:
                self._started_once = True
                return

    def _start(self, timeout_s: float) -> None:
        assert self._proc is None, "already running"
        self.install()
        log_size = self.log_file.stat().st_size if self.log_file.exists() else 0
        argv = [
            self.server,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            f"--pid-file={self.workdir / 'mariadb.pid'}",
            f"--log-error={self.log_file}",
            "--max-connections=500",
            "--innodb-buffer-pool-size=256M",
        ]
        if os.geteuid() == 0:
            argv.append("--user=root")
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._proc = None
                if "Address already in use" in self.logs()[log_size:]:
                    raise _PortTaken
                raise RuntimeError(f"mariadbd exited at start:\n{self.logs()[-3000:]}")
            if self._ready():
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"mariadbd did not answer on {self.port} within {timeout_s}s\n{self.logs()[-3000:]}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                return len(sock.recv(1)) == 1  # the server greeting: it accepts logins now
        except OSError:
            return False

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM: a clean shutdown (InnoDB flushes); every client connection is closed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash; InnoDB runs crash recovery at the next start."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def restart(self, crash: bool = False) -> None:
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def query(self, sql: str, database: str | None = None) -> list[list[str]]:
        """Run ``sql`` with the ``mariadb`` client; rows of tab-separated columns (NULL as the string)."""
        client = _binary("mariadb", "mysql") or "mariadb"
        argv = [client, "--no-defaults", "-h", self.host, "-P", str(self.port), "-u", self.user, "-N", "-B", "-r"]
        if database:
            argv += ["-D", database]
        done = subprocess.run([*argv, "-e", sql], capture_output=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"query failed: {done.stderr.decode(errors='replace')}")
        return [line.split("\t") for line in done.stdout.decode(errors="replace").splitlines()]

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
