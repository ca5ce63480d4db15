"""A short JWT signing key (HS256: one token is enough for an offline search) stops the webapp at start, with
one clear line that names the setting or file and never the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[2]
SHORT_KEY = "only-twenty-six-bytes-long"


def _start_webapp(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m webapp`` on SQLite in ``tmp_path``; it must exit on its own (a timeout fails the test)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    clean.update(
        PYTHONPATH=str(ROOT),
        WA_DB_ENGINE="SQLITE",
        WA_DB_SQLITE_PATH=str(tmp_path / "openprem.db"),
        WA_DATA_DIR=str(tmp_path / "data"),
        WA_WEB_HOSTNAME="127.0.0.1",
        WA_WEB_PORT=str(free_port()),
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "webapp"], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=30
    )


def test_a_short_configured_key_is_refused(tmp_path: Path):
    result = _start_webapp(tmp_path, WA_WEB_JWT_CRYPTO_KEY=SHORT_KEY)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "WA_WEB_JWT_CRYPTO_KEY" in lines[0] and "32 bytes" in lines[0], lines
    assert SHORT_KEY not in result.stderr + result.stdout


def test_a_short_key_file_is_refused_with_one_critical_line(tmp_path: Path):
    key_file = tmp_path / "data" / "web" / "jwt.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(SHORT_KEY + "\n")
    result = _start_webapp(tmp_path)
    assert result.returncode == 1, result.stderr
    critical = [line for line in result.stderr.splitlines() if "critical" in line.lower()]
    assert len(critical) == 1, result.stderr
    assert str(key_file) in critical[0] and "fewer than 32 bytes" in critical[0]
    assert "Traceback" not in result.stderr and SHORT_KEY not in result.stderr + result.stdout
    assert not (tmp_path / "openprem.db").exists()  # refused before touching the database


def test_a_long_enough_key_starts(tmp_path: Path):
    """The check is not a blanket refusal: 32 bytes pass (the process then serves; stop it once it says so)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    clean.update(
        PYTHONPATH=str(ROOT),
        WA_DB_ENGINE="SQLITE",
        WA_DB_SQLITE_PATH=str(tmp_path / "openprem.db"),
        WA_DATA_DIR=str(tmp_path / "data"),
        WA_WEB_HOSTNAME="127.0.0.1",
        WA_WEB_PORT=str(free_port()),
        WA_WEB_JWT_CRYPTO_KEY="k" * 32,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "webapp"], cwd=tmp_path, env=clean, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            assert "critical" not in line.lower(), line
            if "webapp listening on" in line:
                break
        else:
            raise AssertionError(f"webapp exited with {process.wait()}")
    finally:
        process.terminate()
        process.wait(timeout=30)
