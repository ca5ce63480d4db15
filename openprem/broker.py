"""The private Mosquitto of a local multiconnect deployment (``openprem.multiconnect``): the rules of the compose
broker (``conf/mosquitto.conf``: no anonymous clients, a password file, ``conf/mosquitto.acl``) on loopback, with
its state in a directory of the deployment."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path


class BrokerSetupError(RuntimeError):
    """The broker's binaries are missing."""


def _binary(name: str, fallback: str) -> str | None:
    return shutil.which(name) or (fallback if Path(fallback).exists() else None)


def mosquitto_binary() -> str | None:
    return _binary("mosquitto", "/usr/sbin/mosquitto")


def mosquitto_passwd_binary() -> str | None:
    return _binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")


def write_password_file(path: Path, users: Mapping[str, str]) -> None:
    """A Mosquitto password file made by ``mosquitto_passwd``, as ``docker/mosquitto-entrypoint.sh`` does: each
    password on stdin, never in argv.  Blocking: call in a thread."""
    binary = mosquitto_passwd_binary()
    if binary is None:
        raise BrokerSetupError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text("")
    tmp.chmod(0o600)
    for user, password in users.items():
        subprocess.run(
            [binary, str(tmp), user],
            input=f"{password}\n{password}\n".encode(),
            capture_output=True,
            check=True,
            timeout=30,
        )
    tmp.replace(path)


def mosquitto_config(port: int, workdir: Path, password_file: Path, acl_file: Path) -> str:
    """The broker of ``conf/mosquitto.conf`` on loopback, with its state under ``workdir``."""
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            "allow_anonymous false",
            f"password_file {password_file}",
            f"acl_file {acl_file}",
            "persistence true",
            f"persistence_location {workdir / 'data'}/",
            "autosave_interval 60",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            # As root, mosquitto would switch to the "mosquitto" user and lose access to the workdir.
            "user root" if os.geteuid() == 0 else "",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "",
        ]
    )
