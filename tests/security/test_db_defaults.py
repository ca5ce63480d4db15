"""A known default database password is refused outside the embedded mode (issue 12, point 6).

The compose example used to ship ``WA_DB_PASSWORD=openprem-change-me``, which was also the database's root
password: an install left on it is open to anyone who read the same file.  With ``WA_DB_ENGINE`` MYSQL or PGSQL
such a password stops the process at start with one ``CRITICAL`` line naming the variable, never the value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import KNOWN_DEFAULT_DB_PASSWORDS, ConfigError, DbEngine, load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("engine", ["MYSQL", "PGSQL"])
@pytest.mark.parametrize("password", ["openprem-change-me", "PassW0rd", " ChangeMe ", "postgres", "root"])
def test_a_known_default_password_is_refused_on_a_server_database(engine: str, password: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WA_DB_ENGINE": engine, "WA_DB_HOSTNAME": "db", "WA_DB_PASSWORD": password})
    message = str(info.value)
    assert message.startswith("invalid configuration: WA_DB_PASSWORD: ") and "\n" not in message
    assert "known default" in message
    assert password.strip().lower() not in message.lower()


def test_every_listed_default_is_refused_and_a_real_password_is_not() -> None:
    for password in KNOWN_DEFAULT_DB_PASSWORDS:
        with pytest.raises(ConfigError, match="WA_DB_PASSWORD"):
            load_settings(env={"WA_DB_ENGINE": "MYSQL", "WA_DB_PASSWORD": password})
    settings = load_settings(env={"WA_DB_ENGINE": "MYSQL", "WA_DB_PASSWORD": "3f0c8a1e9b7d4c22a5e6"})
    assert settings.db.engine is DbEngine.MYSQL and settings.db.password == "3f0c8a1e9b7d4c22a5e6"
    # Trust or socket authentication (and the test servers) use no password at all: that is the server's call.
    assert load_settings(env={"WA_DB_ENGINE": "PGSQL"}).db.password == ""


def test_the_embedded_sqlite_install_is_not_concerned() -> None:
    assert load_settings(env={"WA_DB_ENGINE": "SQLITE", "WA_DB_PASSWORD": "openprem-change-me"}).db.engine is (
        DbEngine.SQLITE
    )


def test_the_shipped_configuration_holds_no_password() -> None:
    """conf/whatsapp.conf is in git: it must not carry a database password (compose/.env does, per install)."""
    assert read_env_file(ROOT / "conf" / "whatsapp.conf")["WA_DB_PASSWORD"] == ""
    assert all(not v for v in read_env_file(ROOT / "compose" / "env.example").values())


@pytest.mark.parametrize("process", ["coreapp", "webapp"])
def test_a_process_started_with_the_old_compose_password_stops_with_one_critical_line(
    process: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update(
        WA_CONFIG_FILE=str(tmp_path / "absent.conf"),
        WA_DB_ENGINE="MYSQL",
        WA_DB_HOSTNAME="127.0.0.1",
        WA_DB_USERNAME="root",
        WA_DB_PASSWORD="openprem-change-me",
        WA_LOG_DIR=str(tmp_path / "log"),
        WA_DATA_DIR=str(tmp_path / "data"),
    )
    done = subprocess.run(
        [sys.executable, "-m", process], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"CRITICAL {process} cannot start: invalid configuration: WA_DB_PASSWORD: ")
    assert "openprem-change-me" not in done.stderr + done.stdout
