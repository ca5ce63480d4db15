"""Helpers for the network rows and faults: a coreapp with tuned chat timers, and what the client shows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from coreapp.app import CoreApp
from coreapp.storage.tables import message_receipt_log, messages
from shared.bus.local import LocalBus
from shared.config import DbSettings
from tests.coreapp.conftest import Core, Sandbox, core_settings, eventually, register

PHONE = "12025550177"

TunedFactory = Callable[..., Awaitable[Core]]


@pytest.fixture(name="tuned_core")
async def tuned_core_fixture(sandbox: Sandbox) -> AsyncIterator[TunedFactory]:
    """``await tuned_core(db, ping_interval_s=0.5, ...)``: a started CoreApp whose chat settings are overridden."""
    cores: list[Core] = []

    async def factory(db: DbSettings, port: int | None = None, fallback: int | None = None, **chat: Any) -> Core:
        settings = core_settings(db, sandbox, port=port, fallback=fallback)
        settings = settings.model_copy(update={"chat": settings.chat.model_copy(update=chat)})
        bus = LocalBus(default_timeout_s=30.0)
        core = Core(CoreApp(settings, bus), bus, settings)
        await core.app.start()
        cores.append(core)
        return core

    try:
        yield factory
    finally:
        for core in reversed(cores):
            await core.app.stop()


async def ready_core(sandbox: Sandbox, factory: TunedFactory, db: DbSettings, **chat: Any) -> Core:
    """A phone, then a registered, connected coreapp reporting ``sent`` statuses."""
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await factory(db, **chat)
    await register(core, sandbox)
    await core.rpc("settings.patch_application", {"application": {"sent_status": True}})
    return core


async def rows(core: Core, stmt: Any) -> list[Any]:
    async with core.app.db.engine.connect() as conn:
        return list(await conn.execute(stmt))


async def send_text(core: Core, body: str, to: str = PHONE) -> str:
    return str((await core.rpc("messages.send", {"to": to, "type": "text", "text": {"body": body}}))["id"])


async def status_of(core: Core, message_id: str) -> str | None:
    found = await rows(core, select(messages.c.status).where(messages.c.id == message_id))
    return str(found[0].status) if found else None


async def hooks(core: Core, kind: str = "status_change") -> list[dict[str, Any]]:
    """Every webhook body queued (the dispatcher keeps them: no webhook URL is configured)."""
    from coreapp.storage.tables_webhooks import webhook_outbox

    found = await rows(core, select(webhook_outbox.c.body).where(webhook_outbox.c.kind == kind))
    return [orjson.loads(r.body) for r in found]


async def status_hooks(core: Core, message_id: str) -> list[str]:
    return [s["status"] for body in await hooks(core) for s in body.get("statuses", []) if s["id"] == message_id]


async def receipts(core: Core, message_id: str) -> list[str]:
    found = await rows(core, select(message_receipt_log.c.status).where(message_receipt_log.c.message_id == message_id))
    return [str(r.status) for r in found]


async def inbox(sandbox: Sandbox, wa_id: str = PHONE) -> list[dict[str, Any]]:
    return list((await sandbox.admin("GET", f"/admin/phones/{wa_id}/inbox"))["messages"])


async def wait_all_read(core: Core, ids: list[str], timeout_s: float = 60.0) -> None:
    async def all_read() -> bool:
        return all([await status_of(core, i) == "read" for i in ids])

    await eventually(all_read, timeout_s=timeout_s, interval_s=0.1)


async def assert_each_once(core: Core, sandbox: Sandbox, ids: list[str]) -> None:
    """Each message in the phone's inbox once, and sent/delivered/read reported once each."""
    assert sorted(m["id"] for m in await inbox(sandbox)) == sorted(ids)
    for message_id in ids:
        assert sorted(await status_hooks(core, message_id)) == ["delivered", "read", "sent"], message_id
        assert sorted(await receipts(core, message_id)) == ["delivered", "read"], message_id
