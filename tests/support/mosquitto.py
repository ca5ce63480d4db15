"""A private Mosquitto for tests that stop and restart the broker, and the "is a broker there" check.

The private broker listens on 127.0.0.1 on a free port with persistence in a temporary directory and
``set_tcp_nodelay true``; ``stop()`` + ``start()`` bring it back on the same port with the saved sessions,
which is what the reconnect and persistent-session tests need.  Anonymous by default; given a password file
and an ACL file it runs like the compose broker (``allow_anonymous false``), and ``PrivateMosquitto.
authenticated`` generates passwords for the compose identities and uses the shipped ``conf/mosquitto.acl``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ACL_FILE = ROOT / "conf" / "mosquitto.acl"
"""What each broker identity may do: the file compose mounts, so the tests check the shipped rules."""
BUS_ROLES = ("webapp", "coreapp")
"""The identities the ACL grants something on ``openprem/#``; ``authenticated`` also makes ``chatd``, which has
a valid password and no rights (any other process on the compose network)."""

SYSTEM_HOST = os.environ.get("WA_TEST_MQTT_HOST", "127.0.0.1")
SYSTEM_PORT = int(os.environ.get("WA_TEST_MQTT_PORT", "1883"))


def services_required() -> bool:
    return os.environ.get("WA_TEST_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip, unless WA_TEST_REQUIRE_SERVICES=1 says the services must be there (then fail)."""
    if services_required():
        pytest.fail(f"{reason} (WA_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None


def mosquitto_passwd_binary() -> str | None:
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    return "/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").exists() else None


def write_password_file(path: Path, users: Mapping[str, str]) -> None:
    """A Mosquitto password file, made by ``mosquitto_passwd`` as the compose entrypoint does (password on stdin,
    never in argv)."""
    binary = mosquitto_passwd_binary()
    if binary is None:
        raise RuntimeError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    path.chmod(0o600)
    for user, password in users.items():
        subprocess.run(
            [binary, str(path), user],
            input=f"{password}\n{password}\n".encode(),
            capture_output=True,
            check=True,
            timeout=30,
        )


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener instead of plain TCP: the server certificate chain and its key (PEM)."""

    cert_file: Path
    key_file: Path


class PrivateMosquitto:
    """One private broker process; restartable on the same port with its persistence kept."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        binary: str | None = None,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        users: Mapping[str, str] | None = None,
        tls: BrokerTls | None = None,
    ) -> None:
        found = binary or mosquitto_binary()
        if found is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.binary = found
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
        self.users: dict[str, str] = dict(users or {})
        """user -> password of the identities in ``password_file`` (for the clients of a test)."""
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        auth = ["allow_anonymous true"]
        if password_file is not None:
            auth = ["allow_anonymous false", f"password_file {password_file}"]
        if acl_file is not None:
            auth.append(f"acl_file {acl_file}")
        listener = [f"listener {self.port} {self.host}"]
        if tls is not None:
            listener += [f"certfile {tls.cert_file}", f"keyfile {tls.key_file}"]
        self.config.write_text(
            "\n".join(
                [
                    *listener,
                    *auth,
                    "persistence true",
                    f"persistence_location {workdir / 'data'}/",
                    "set_tcp_nodelay true",
                    "max_queued_messages 100000",
                    # Running as root, mosquitto would switch to the "mosquitto" user and lose access to workdir.
                    "user root" if os.geteuid() == 0 else "",
                    f"log_dest file {self.log_file}",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                    "",
                ]
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def authenticated(cls, workdir: Path, *, tls: BrokerTls | None = None) -> PrivateMosquitto:
        """The compose broker's rules: no anonymous clients, ``conf/mosquitto.acl``, and fresh random passwords
        for ``webapp``, ``coreapp`` and ``chatd`` (``users``)."""
        users = {user: secrets.token_urlsafe(18) for user in (*BUS_ROLES, "chatd")}
        password_file = workdir / "auth" / "passwd"
        write_password_file(password_file, users)
        return cls(workdir, password_file=password_file, acl_file=ACL_FILE, users=users, tls=tls)

    def start(self, timeout_s: float = 10.0) -> None:
        assert self._proc is None, "already running"
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err}\n{self.logs()}")
            if port_open(self.host, self.port, 0.2):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s}s\n{self.logs()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: mosquitto saves its persistence database and closes every connection."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
