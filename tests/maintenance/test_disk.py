"""The free-disk-space guard with the real statvfs: the threshold is moved above, then below, the real free space."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import select

from coreapp.maintenance.disk import DiskGuard, free_bytes
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor
from tests.coreapp.conftest import PHONE, Core, CoreFactory, Sandbox, eventually, register

HUGE = 1 << 62
TEXT = {"to": PHONE, "type": "text", "text": {"body": "hello"}}


def _guard(core: Core) -> DiskGuard:
    assert core.app.disk is not None
    return core.app.disk


async def _error_webhooks(core: Core) -> list[str]:
    async with core.app.db.engine.connect() as conn:
        rows = await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "error"))
        return [str(row[0]) for row in rows]


def _gauge(stats: dict[str, Any], name: str, directory: str) -> float:
    (value,) = [s["value"] for s in stats[name]["data"] if s["labels"]["dir"] == directory]
    return float(value)


async def test_disk_full_is_critical_then_recovers_without_restart(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(sqlite_db)
    await register(core, sandbox)
    guard = _guard(core)
    assert guard.min_free_bytes == 10 * 1024 * 1024  # WA_DISK_MIN_FREE_MB default
    assert await core.rpc("health.get") == {"gateway_status": "connected"}  # no "errors" key when all is well
    assert "id" in await core.rpc("messages.send", TEXT)

    caplog.set_level(logging.INFO, logger="openprem.coreapp.disk")
    guard.min_free_bytes = HUGE  # more than any disk has: every directory is now "full"
    states = await guard.check()
    await guard.check()  # still critical: no second log line, no second webhook
    assert set(states) == {"data", "log", "media"} and all(s.critical for s in states.values())

    criticals = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(criticals) == 3 and all("sending is refused" in r.getMessage() for r in criticals)
    health = await core.rpc("health.get")
    assert health["gateway_status"] == "connected"
    assert {e["code"] for e in health["errors"]} == {1016} and len(health["errors"]) == 3
    assert any("data directory" in e["details"] for e in health["errors"])
    bodies = await _error_webhooks(core)
    assert len(bodies) == 3 and all('"code":1016' in b and "MB free" in b for b in bodies)
    stats = (await core.rpc("stats.app"))["metrics"]
    assert _gauge(stats, "disk_critical", "log") == 1
    assert _gauge(stats, "disk_free_bytes", "data") > 0
    assert stats["disk_min_free_bytes"]["data"] == [{"labels": {}, "value": guard.min_free_bytes}]

    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", TEXT)
    assert info.value.code is ErrorCode.OVERLOADED
    assert info.value.details is not None and "free in the data directory" in info.value.details

    # Space "returns": the periodic check (here on a tiny interval) clears the state; no restart.
    guard.min_free_bytes = 0
    supervisor = TaskSupervisor("test-disk")
    guard.interval_s = 0.05
    guard.start(supervisor)
    try:

        async def recovered() -> bool:
            return "errors" not in await core.rpc("health.get")

        await eventually(recovered)
    finally:
        await supervisor.close()
    assert len([r for r in caplog.records if "disk space back" in r.getMessage()]) == 3
    assert "id" in await core.rpc("messages.send", TEXT)
    stats = (await core.rpc("stats.app"))["metrics"]
    assert _gauge(stats, "disk_critical", "log") == 0
    assert len(await _error_webhooks(core)) == 3


async def test_send_refused_while_critical(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await make_core(backend)
    await register(core, sandbox)
    guard = _guard(core)
    guard.min_free_bytes = HUGE
    await guard.check()
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", TEXT)
    assert info.value.code is ErrorCode.OVERLOADED
    guard.min_free_bytes = 0
    await guard.check()
    assert "id" in await core.rpc("messages.send", TEXT)


def test_free_bytes_of_a_missing_directory_is_its_parents(tmp_path: Any) -> None:
    missing, parent = free_bytes(tmp_path / "not" / "yet"), free_bytes(tmp_path)
    assert missing > 0 and abs(missing - parent) < 100 * 1024 * 1024  # same file system (other writers aside)
