"""shared.logging: console and file output, gzip rotation for coreapp, secret redaction."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from shared.config import LogSettings
from shared.logging import REDACTED, ROTATION, Rotation, is_secret_key, setup_logging, stop_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    stop_logging()
    root.setLevel(level)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_file_lines_from_stdlib_and_structlog(tmp_path: Path) -> None:
    setup_logging(LogSettings(level="INFO", to_file=True), tmp_path, "webapp", console=False)
    logging.getLogger("openprem.webapp.test").info("hello %s", "world", extra={"request_id": "r1"})
    structlog.get_logger("openprem.webapp.sl").info("structured", message_id="m1")
    logging.getLogger("openprem.webapp.test").debug("not at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("openprem.webapp.test").exception("failed")
    stop_logging()

    lines = _lines(tmp_path / "webapp.log")
    assert [line["event"] for line in lines] == ["hello world", "structured", "failed"]
    assert lines[0]["request_id"] == "r1"
    assert lines[0]["logger"] == "openprem.webapp.test"
    assert lines[0]["level"] == "info"
    assert lines[1]["message_id"] == "m1"
    assert "ValueError: boom" in str(lines[2]["exception"])
    assert all("timestamp" in line for line in lines)


def test_console_only_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(LogSettings(), tmp_path, "webapp")
    logging.getLogger("openprem.x").warning("visible on the console", extra={"password": "hunter2"})
    stop_logging()
    err = capsys.readouterr().err
    assert "visible on the console" in err
    assert "hunter2" not in err
    assert not list(tmp_path.iterdir())


def test_coreapp_rotation_is_gzipped(tmp_path: Path) -> None:
    tiny = Rotation(max_bytes=2_000, backup_count=3, compress=ROTATION["coreapp"].compress)
    setup_logging(LogSettings(to_file=True), tmp_path, "coreapp", rotation=tiny, console=False)
    log = logging.getLogger("openprem.coreapp.test")
    for i in range(200):
        log.info("line %d %s", i, "x" * 50)
    stop_logging()

    names = sorted(p.name for p in tmp_path.iterdir())
    assert "coreapp.log" in names
    assert names == ["coreapp.log", "coreapp.log.1.gz", "coreapp.log.2.gz", "coreapp.log.3.gz"]
    newest_backup = gzip.decompress((tmp_path / "coreapp.log.1.gz").read_bytes()).decode()
    assert '"event": "line' in newest_backup
    # The live file holds the last lines.
    assert str(_lines(tmp_path / "coreapp.log")[-1]["event"]).startswith("line 199 ")


def test_webapp_rotation_is_plain(tmp_path: Path) -> None:
    assert ROTATION["webapp"] == Rotation(20 * 1024 * 1024, 30, False)
    assert ROTATION["coreapp"] == Rotation(15 * 1024 * 1024, 30, True)
    tiny = Rotation(max_bytes=1_000, backup_count=2, compress=False)
    setup_logging(LogSettings(to_file=True), tmp_path, "webapp", rotation=tiny, console=False)
    for i in range(50):
        logging.getLogger("openprem.webapp").info("line %d %s", i, "y" * 50)
    stop_logging()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["webapp.log", "webapp.log.1", "webapp.log.2"]


def test_secrets_redacted(tmp_path: Path) -> None:
    setup_logging(LogSettings(to_file=True), tmp_path, "chatd", console=False)
    structlog.get_logger("openprem.t").info(
        "login",
        password="hunter2",
        new_password="Secret-1",
        token="eyJhbGciOi",
        pin="123456",
        cert="Q0VSVA==",
        api_key="k-123",
        body={"auth": {"token": "nested-token"}, "to": "12025550123"},
        key_id=7,
        ping_interval_s=30,
        cert_file="/etc/ca.pem",
    )
    logging.getLogger("openprem.t").info("stdlib", extra={"jwt_crypto_key": "abc", "wa_id": "12025550123"})
    stop_logging()

    text = (tmp_path / "chatd.log").read_text()
    for secret in ("hunter2", "Secret-1", "eyJhbGciOi", "123456", "Q0VSVA==", "k-123", "nested-token", "abc"):
        assert secret not in text
    first, second = _lines(tmp_path / "chatd.log")
    assert first["password"] == REDACTED and first["pin"] == REDACTED
    assert first["body"] == {"auth": {"token": REDACTED}, "to": "12025550123"}
    assert first["key_id"] == 7 and first["ping_interval_s"] == 30 and first["cert_file"] == "/etc/ca.pem"
    assert second["jwt_crypto_key"] == REDACTED and second["wa_id"] == "12025550123"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("WA_DB_PASSWORD", True),
        ("token", True),
        ("access-token", True),
        ("pin", True),
        ("cert", True),
        ("private_key", True),
        ("key", True),
        ("ping", False),
        ("shipping", False),
        ("key_id", False),
        ("token_ttl_s", False),
        ("message_id", False),
        ("monkey", False),
    ],
)
def test_is_secret_key(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_setup_twice_replaces_handlers(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    setup_logging(LogSettings(to_file=True), tmp_path, "webapp")
    once = len(root.handlers)
    setup_logging(LogSettings(to_file=True), tmp_path, "webapp")
    assert len(root.handlers) == once == before + 2
    stop_logging()
    assert len(root.handlers) == before
