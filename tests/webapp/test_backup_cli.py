"""``openprem backup`` / ``restore`` (``openprem.backup``) against a real webapp (coreapp faked behind the bus): the
blob goes to a 0600 file and back; on a terminal the steps show on one line that is removed at the end, on anything
else nothing is written but the result."""

from __future__ import annotations

import asyncio
import io
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest

from openprem.backup import CliError, Target, backup, restore
from shared.config import DbEngine, DbSettings
from shared.errors import ApiError, ErrorCode
from tests.webapp.conftest import ADMIN_PASSWORD, Api, FakeCore
from webapp.app import WebApp

BLOB = "b3BlbnByZW0tYmFja3Vw" * 5000  # ~100 KB: several upload chunks


class BackupCore(FakeCore):
    def __init__(self) -> None:
        super().__init__()
        self.restored: dict[str, Any] | None = None

    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "settings.backup":
            await asyncio.sleep(0.7)  # the key derivation
            return {"data": BLOB}
        if method == "settings.restore":
            if payload["password"] != "backup-pass":
                raise ApiError(ErrorCode.INVALID_PARAMETER, "wrong password or not a backup")
            await asyncio.sleep(0.7)
            self.restored = payload
            return {}
        return await super().handle(method, payload)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, name_prefix="t_", sqlite_path=tmp_path / "web.db")


@pytest.fixture
def core() -> BackupCore:
    return BackupCore()


@pytest.fixture
async def target(admin: Api, webapp: WebApp, tmp_path: Path) -> Target:
    context = ssl.create_default_context(cafile=str(tmp_path / "data" / "web" / "server.crt"))
    return Target(webapp.url, "admin", ADMIN_PASSWORD, context)


async def test_backup_then_restore_with_a_progress_line(target: Target, core: BackupCore, tmp_path: Path) -> None:
    out = tmp_path / "openprem.backup"
    screen = FakeTty()
    assert await backup(target, "backup-pass", out, screen) == len(BLOB)
    assert out.read_text() == BLOB
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    shown = screen.getvalue()
    assert "\rbackup: coreapp is deriving the key and encrypting (scrypt)" in shown
    assert shown.endswith("\r") and "\n" not in shown  # the line is removed: the command prints its own result

    screen = FakeTty()
    sent = await restore(target, "backup-pass", out, screen)
    assert core.restored == {"password": "backup-pass", "data": BLOB}
    assert sent > len(BLOB)
    shown = screen.getvalue()
    assert "\rrestore: coreapp is decrypting and restarting the chat connection" in shown
    assert "\n" not in shown


async def test_not_on_a_terminal_nothing_is_written(target: Target, core: BackupCore, tmp_path: Path) -> None:
    out = tmp_path / "openprem.backup"
    quiet = io.StringIO()
    await backup(target, "backup-pass", out, quiet)
    await restore(target, "backup-pass", out, quiet)
    assert quiet.getvalue() == ""
    assert core.restored is not None


async def test_refusals_are_one_line(target: Target, tmp_path: Path) -> None:
    out = tmp_path / "openprem.backup"
    out.write_text(BLOB)
    with pytest.raises(CliError, match=r"restore refused: HTTP 400, 1009"):
        await restore(target, "wrong-pass", out, io.StringIO())
    wrong = Target(target.url, "admin", "Not-the-pass1!", target.ssl)
    with pytest.raises(CliError, match=r"login as admin refused: HTTP 401"):
        await backup(wrong, "backup-pass", out, io.StringIO())
