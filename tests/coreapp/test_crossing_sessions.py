"""A phone's first message crossing the business's first message, through real coreapp and chatd.

Both sides open a Signal session at once; each accepts the other's and keeps its own (session records), so
messages in both directions keep decrypting. Before session records this lost the phone for good: every
later business message ended ``failed`` ("authentication tag mismatch").
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register


async def _inbox_bodies(sandbox: Sandbox) -> list[str]:
    inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    return [m["text"]["body"] for m in inbox if m.get("type") == "text"]


async def _inbound_bodies(core: Core) -> list[str]:
    async with core.app.db.engine.connect() as conn:
        rows = list(await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "inbound_message")))
    return [m["text"]["body"] for row in rows for m in orjson.loads(row.body)["messages"] if m["type"] == "text"]


async def _send(core: Core, body: str) -> str:
    return str((await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": body}}))["id"])


async def _phone_says(sandbox: Sandbox, body: str) -> None:
    payload: dict[str, Any] = {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": body}}
    await sandbox.admin("POST", f"/admin/phones/{PHONE}/send", payload)


async def test_crossing_first_messages_keep_both_directions_working(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher", "online": False})
    core = await make_core(backend)
    await register(core, sandbox)

    # The business opens a session; the phone is offline, so chatd holds that PREKEY message...
    await _send(core, "business 1")
    # ...while the phone, not knowing, opens its own session to the business.
    await _phone_says(sandbox, "phone 1")
    await eventually(lambda: _has(core, "phone 1"))
    # The phone comes online and meets the business's session, which crossed its own.
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})

    for i in range(2, 5):
        await _send(core, f"business {i}")
        await _phone_says(sandbox, f"phone {i}")

    async def all_arrived() -> bool:
        on_phone = await _inbox_bodies(sandbox)
        at_business = await _inbound_bodies(core)
        return all(f"business {i}" in on_phone for i in range(1, 5)) and all(
            f"phone {i}" in at_business for i in range(1, 5)
        )

    await eventually(all_arrived, timeout_s=30)
    assert sorted(await _inbox_bodies(sandbox)) == [f"business {i}" for i in range(1, 5)]


async def _has(core: Core, body: str) -> bool:
    return body in await _inbound_bodies(core)
