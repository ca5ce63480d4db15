"""``python -m coreapp`` on a database with sealed keys but without their key: one CRITICAL line, exit 1, and
nothing rewritten (never a fresh key, never a silent re-registration)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from coreapp.app import run_migrations
from coreapp.storage.account import AccountStore
from coreapp.storage.keys import KeyStore
from coreapp.storage.tables import account, identity
from shared.config import DbEngine, DbSettings, KeystoreSettings, Settings
from shared.db.engine import Database
from shared.ids import WaId

ROOT = Path(__file__).resolve().parents[2]


async def _registered_install(tmp_path: Path) -> tuple[DbSettings, Path]:
    """A registered install's database (SQLite) with a sealed identity, and its data directory."""
    db_settings = DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "data" / "openprem.db")
    data_dir = tmp_path / "data"
    await run_migrations(Settings(db=db_settings))
    db = await Database.connect(db_settings)
    try:
        store = await KeyStore.open(db, KeystoreSettings(), data_dir)
        await db.run(
            "test.register",
            lambda conn: AccountStore(db).mark_registered_txn(
                conn, "1", "6315551000", WaId("16315551000"), "Acme", "cert"
            ),
        )
        await store.save_identity('{"identity": "the only copy"}')
    finally:
        await db.close()
    return db_settings, data_dir


def _run_coreapp(
    tmp_path: Path, db_settings: DbSettings, data_dir: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "empty.conf").write_text("")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "WA_CONFIG_FILE": str(tmp_path / "empty.conf"),
        "WA_DB_ENGINE": "SQLITE",
        "WA_DB_SQLITE_PATH": str(db_settings.sqlite_path),
        "WA_DATA_DIR": str(data_dir),
        "WA_MEDIA_DIR": str(tmp_path / "media"),
        "WA_LOG_DIR": str(tmp_path / "log"),
        "NO_COLOR": "1",
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "coreapp"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


async def _rows(db_settings: DbSettings) -> tuple[object, object]:
    db = await Database.connect(db_settings)
    try:
        async with db.engine.connect() as conn:
            ident = await conn.scalar(select(identity.c.data))
            status = await conn.scalar(select(account.c.status))
        return ident, status
    finally:
        await db.close()


def _critical_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if "critical" in line.lower()]


async def test_missing_key_file_is_one_critical_line(tmp_path: Path) -> None:
    db_settings, data_dir = await _registered_install(tmp_path)
    before = await _rows(db_settings)
    key_file = data_dir / "keys" / "store.key"
    key_file.unlink()

    result = _run_coreapp(tmp_path, db_settings, data_dir)
    assert result.returncode == 1, result.stderr
    lines = _critical_lines(result)
    assert len(lines) == 1, result.stderr
    assert "coreapp cannot run" in lines[0] and str(key_file) in lines[0] and "is missing" in lines[0]
    assert "Traceback" not in result.stderr
    assert not key_file.exists()  # no new key made over sealed rows
    assert await _rows(db_settings) == before  # still registered, identity untouched


async def test_wrong_key_is_one_critical_line(tmp_path: Path) -> None:
    db_settings, data_dir = await _registered_install(tmp_path)
    before = await _rows(db_settings)
    other = base64.b64encode(os.urandom(32)).decode()

    result = _run_coreapp(tmp_path, db_settings, data_dir, WA_KEYSTORE_KEY=other)
    assert result.returncode == 1, result.stderr
    lines = _critical_lines(result)
    assert len(lines) == 1 and "is not the key the stored identity and sessions are sealed with" in lines[0]
    assert other not in result.stdout + result.stderr  # the key itself is never printed
    assert await _rows(db_settings) == before
