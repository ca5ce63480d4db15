"""Send, statuses, receive: coreapp + chatd + a real database on each backend."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from sqlalchemy import select

from coreapp.storage.tables import message_receipt_log, messages
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register


async def _rows(core: Core, stmt: Any) -> list[Any]:
    async with core.app.db.engine.connect() as conn:
        return list(await conn.execute(stmt))


async def _status_hooks(core: Core, message_id: str) -> list[str]:
    rows = await _rows(core, select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "status_change"))
    found = []
    for row in rows:
        for status in orjson.loads(row.body)["statuses"]:
            if status["id"] == message_id:
                found.append(status["status"])
    return found


async def _message_status(core: Core, message_id: str) -> str | None:
    rows = await _rows(core, select(messages.c.status).where(messages.c.id == message_id))
    return rows[0].status if rows else None


async def _ready_core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(db)
    await register(core, sandbox)
    return core


@pytest.mark.parametrize("sent_status", [True, False])
async def test_send_text_statuses_and_webhooks(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, sent_status: bool
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    await core.rpc("settings.patch_application", {"application": {"sent_status": sent_status}})

    message_id = (await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": "hello"}}))["id"]
    assert await _message_status(core, message_id) in ("accepted", "sent", "delivered", "read")

    async def in_inbox() -> list[Any]:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return [m for m in inbox if m["id"] == message_id]

    (received,) = await eventually(in_inbox)
    assert received["text"]["body"] == "hello"
    assert received["from"] == BUSINESS_WA_ID

    async def read() -> bool:
        return await _message_status(core, message_id) == "read"

    await eventually(read)
    expected = ["sent", "delivered", "read"] if sent_status else ["delivered", "read"]

    async def hooks() -> bool:
        return sorted(await _status_hooks(core, message_id)) == sorted(expected)

    await eventually(hooks)
    log = await _rows(core, select(message_receipt_log.c.status).where(message_receipt_log.c.message_id == message_id))
    assert {r.status for r in log} == {"delivered", "read"}

    # A second message reuses the session (MESSAGE envelopes) and still arrives.
    second = (await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": "again"}}))["id"]

    async def second_in_inbox() -> bool:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return any(m["id"] == second and m["text"]["body"] == "again" for m in inbox)

    await eventually(second_in_inbox)


async def test_inbound_message_stored_once_with_webhook(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "hi!"}}
    )
    message_id = sent["id"]

    async def stored() -> list[Any]:
        return await _rows(core, select(messages).where(messages.c.id == message_id))

    (row,) = await eventually(stored)
    assert row.direction == "in" and row.peer == PHONE and row.status == "received"
    assert orjson.loads(row.content)["text"]["body"] == "hi!"

    async def hook() -> list[Any]:
        return await _rows(core, select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "inbound_message"))

    (hook_row,) = await eventually(hook)
    body = orjson.loads(hook_row.body)
    assert body["messages"][0]["id"] == message_id
    assert body["messages"][0]["from"] == PHONE
    assert body["messages"][0]["text"] == {"body": "hi!"}
    assert body["contacts"] == [{"profile": {"name": "Kerry Fisher"}, "wa_id": PHONE}]

    # The business answers over the session the phone opened.
    reply = (await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": "welcome"}}))["id"]

    async def reply_in_inbox() -> bool:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return any(m["id"] == reply for m in inbox)

    await eventually(reply_in_inbox)


async def test_send_to_self_is_1021_and_unknown_user_fails(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "me"}})
    assert info.value.code is ErrorCode.BAD_USER

    message_id = (await core.rpc("messages.send", {"to": "19995550000", "type": "text", "text": {"body": "?"}}))["id"]

    async def failed() -> bool:
        return await _message_status(core, message_id) == "failed"

    await eventually(failed)
    rows = await _rows(core, select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "status_change"))
    statuses = [s for r in rows for s in orjson.loads(r.body)["statuses"] if s["id"] == message_id]
    assert statuses == [
        {
            "id": message_id,
            "recipient_id": "19995550000",
            "status": "failed",
            "timestamp": statuses[0]["timestamp"],
            "errors": [{"code": 1013, "title": "User is not valid"}],
        }
    ]


COUNT = 15


async def test_dropped_connections_lose_and_duplicate_nothing(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _ready_core(sandbox, make_core, sqlite_db)
    assert core.app.chat is not None
    first_generation = core.app.chat.generation
    # Every connection now dies after 40 frames from chatd: acks and receipts get lost mid-stream.  (chatd pushes
    # the whole backlog at once, so the cap must exceed the largest backlog: 2 receipts per message + login.)
    await sandbox.admin("POST", "/admin/faults", {"kind": "drop_after", "frames": 40})
    ids = []
    for n in range(COUNT):

        async def send(n: int = n) -> Any:
            try:
                return (await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": f"m{n}"}}))["id"]
            except ApiError as exc:
                assert exc.code is ErrorCode.NOT_READY  # between reconnects
                return None

        ids.append(await eventually(send, timeout_s=60, interval_s=0.2))

    async def all_read() -> bool:
        return all([await _message_status(core, i) == "read" for i in ids])

    await eventually(all_read, timeout_s=120, interval_s=0.2)
    await sandbox.admin("DELETE", "/admin/faults")
    assert core.app.chat is not None and core.app.chat.generation > first_generation  # it did reconnect
    inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    assert sorted(m["id"] for m in inbox) == sorted(ids)  # each exactly once
    assert {m["text"]["body"] for m in inbox} == {f"m{n}" for n in range(COUNT)}
    assert sorted(await _status_hooks_for(core, ids)) == sorted(["delivered", "read"] * COUNT)


async def _status_hooks_for(core: Core, ids: list[str]) -> list[str]:
    found = []
    for message_id in ids:
        found.extend(await _status_hooks(core, message_id))
    return found
