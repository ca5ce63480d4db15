"""What OpenPrem creates on disk is private to its user: files 0600, directories 0700, under a permissive umask.

The database (SQLite file, WAL and SHM), media files and their sidecars, the key-store key, log files (rotated and
gzipped ones too), the TLS private key and the JWT key, and the directories made for them.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from coreapp.app import run_migrations
from coreapp.storage.keys import KeyStore
from openprem.embedded import prepare_dirs
from shared.config import (
    DbEngine,
    DbSettings,
    KeystoreSettings,
    LogSettings,
    PathSettings,
    SandboxSettings,
    Settings,
    WebSettings,
)
from shared.db.engine import Database
from shared.logging import Rotation, setup_logging, stop_logging
from shared.media_files import MediaFiles
from webapp.auth import JWT_KEY_FILE, load_jwt_key
from webapp.tls import ensure_certificate

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """022, as most shells and container runtimes set it: modes must not depend on a strict umask."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_tree(top: Path, leaf: Path) -> None:
    """``leaf`` and every directory between ``top`` (exclusive) and it are 0700."""
    current = leaf
    while current != top:
        assert _mode(current) == 0o700, f"{current}: {_mode(current):o}"
        current = current.parent


async def test_sqlite_database_wal_and_shm(tmp_path: Path) -> None:
    settings = DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "var" / "data" / "openprem.db")
    db = await Database.connect(settings)
    try:
        await db.run("test.write", lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
        path = settings.sqlite_path
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)  # WAL mode, a connection open
        assert [_mode(f) for f in files] == [0o600] * 3
        _private_tree(tmp_path, path.parent)
    finally:
        await db.close()


async def test_an_existing_world_readable_database_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    db = await Database.connect(DbSettings(engine=DbEngine.SQLITE, sqlite_path=path))
    try:
        await db.run("test.write", lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
        assert _mode(path) == 0o600 and _mode(Path(f"{path}-wal")) == 0o600
    finally:
        await db.close()


async def test_media_files(tmp_path: Path) -> None:
    files = MediaFiles(tmp_path / "var" / "media")
    meta = await files.save(JPEG, "image/jpeg")
    blob = files.blob_path(meta.id)
    assert _mode(blob) == 0o600 and _mode(blob.with_name(meta.id + ".json")) == 0o600
    _private_tree(tmp_path, blob.parent)


async def test_keystore_key_file(tmp_path: Path) -> None:
    settings = DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "core.db")
    await run_migrations(Settings(db=settings))
    db = await Database.connect(settings)
    try:
        data_dir = tmp_path / "var" / "data"
        await KeyStore.open(db, KeystoreSettings(), data_dir)
        key_file = data_dir / "keys" / "store.key"
        assert _mode(key_file) == 0o600
        _private_tree(tmp_path, key_file.parent)
        assert [p.name for p in key_file.parent.iterdir()] == ["store.key"]  # no temporary file left
    finally:
        await db.close()


@pytest.mark.parametrize("process", ["webapp", "coreapp"])
def test_log_files(tmp_path: Path, process: str) -> None:
    log_dir = tmp_path / "var" / "log"
    compress = process == "coreapp"
    setup_logging(
        LogSettings(to_file=True), log_dir, process, rotation=Rotation(1000, 3, compress=compress), console=False
    )
    log = logging.getLogger(f"openprem.{process}.test")
    try:
        for i in range(60):
            log.info("line %03d %s", i, "x" * 100)
    finally:
        stop_logging()
    created = sorted(log_dir.iterdir())
    assert len(created) == 4 and any(p.name.endswith(".gz") for p in created) == compress
    assert {p.name: _mode(p) for p in created} == {p.name: 0o600 for p in created}
    _private_tree(tmp_path, log_dir)


def test_tls_key_and_jwt_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "var" / "data"
    _, key = ensure_certificate(WebSettings(), data_dir)
    load_jwt_key(WebSettings(), data_dir)
    assert _mode(key) == 0o600 and _mode(key.parent / JWT_KEY_FILE) == 0o600
    _private_tree(tmp_path, key.parent)


def test_embedded_launcher_directories(tmp_path: Path) -> None:
    var = tmp_path / "var"
    paths = PathSettings(data_dir=var / "data", media_dir=var / "media", log_dir=var / "log")
    settings = Settings(
        paths=paths,
        db=DbSettings(engine=DbEngine.SQLITE, sqlite_path=var / "db" / "openprem.db"),
        sandbox=SandboxSettings(data_dir=var / "chatd"),
    )
    prepare_dirs(settings, sandbox=True)
    for directory in (var / "data", var / "media", var / "log", var / "db", var / "chatd"):
        _private_tree(tmp_path, directory)
