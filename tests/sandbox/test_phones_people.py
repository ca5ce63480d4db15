"""Phones that behave like people: their own receipt/read delays, automatic replies of every inbound type, every
inbound type sent on demand, each arriving at the business in the On-Prem webhook shape of reference §3.1; and
the 480/1028 identity acknowledgement flow after a phone reinstalls (§2.1, §4)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import BUSINESS_WA_ID, Core, CoreFactory, Sandbox, eventually, register
from tests.support import media_samples as samples

PHONE = "12025550199"
SLOW = "12025550188"


async def _core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings, *phones: dict[str, Any]) -> Core:
    for phone in phones or ({"wa_id": PHONE},):
        await sandbox.admin("POST", "/admin/phones", {"name": "Kerry Fisher", **phone})
    core = await make_core(db)
    await register(core, sandbox)
    await core.rpc("settings.patch_application", {"application": {"sent_status": True}})
    return core


async def _send(core: Core, to: str = PHONE, **content: Any) -> str:
    payload = content or {"type": "text", "text": {"body": "hello"}}
    return str((await core.rpc("messages.send", {"to": to, **payload}))["id"])


async def _bodies(core: Core, kind: str) -> list[dict[str, Any]]:
    async with core.app.db.engine.connect() as conn:
        # In queue order: PostgreSQL returns a row updated meanwhile (a retried delivery) last without ORDER BY.
        query = select(webhook_outbox.c.body).where(webhook_outbox.c.kind == kind).order_by(webhook_outbox.c.seq)
        rows = list(await conn.execute(query))
    return [orjson.loads(r.body) for r in rows]


async def _statuses(core: Core, message_id: str) -> list[str]:
    return [s["status"] for b in await _bodies(core, "status_change") for s in b["statuses"] if s["id"] == message_id]


async def _stamps(core: Core, message_id: str) -> dict[str, int]:
    return {
        s["status"]: int(s["timestamp"])
        for b in await _bodies(core, "status_change")
        for s in b["statuses"]
        if s["id"] == message_id
    }


async def _wait_statuses(core: Core, message_id: str, *expected: str) -> None:
    async def reached() -> bool:
        return sorted(await _statuses(core, message_id)) == sorted(expected)

    await eventually(reached)


async def _inbound(core: Core, message_id: str) -> dict[str, Any]:
    """The one inbound webhook body carrying ``message_id``."""

    async def find() -> list[dict[str, Any]]:
        return [b for b in await _bodies(core, "inbound_message") if b["messages"][0]["id"] == message_id]

    (body,) = await eventually(find)
    return body


async def _replies(core: Core, phone: str = PHONE) -> list[dict[str, Any]]:
    return [
        b
        for b in await _bodies(core, "inbound_message")
        if b["messages"][0]["from"] == phone and b["messages"][0]["type"] != "system"
    ]


async def _next_reply(core: Core, seen: int) -> dict[str, Any]:
    async def more() -> list[dict[str, Any]] | None:
        found = await _replies(core)
        return found if len(found) > seen else None

    found = await eventually(more)
    assert len(found) == seen + 1, found
    return found[-1]


# --- receipt and read delays per phone -------------------------------------------------------------------


async def test_each_phone_keeps_its_own_receipt_and_read_delays(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend, {"wa_id": PHONE}, {"wa_id": SLOW})
    changed = await sandbox.admin("PATCH", f"/admin/phones/{SLOW}", {"receipt_delay_s": 1.5, "read_delay_s": 2})
    assert (changed["receipt_delay_s"], changed["read_delay_s"]) == (1.5, 2.0)
    for bad in ({"receipt_delay_s": -1}, {"read_delay_s": "2"}, {"receipt_delay_s": True}):
        url = f"http://127.0.0.1:{sandbox.settings.admin_port}/admin/phones/{SLOW}"
        async with sandbox.http.patch(url, json=bad) as resp:
            assert resp.status == 400, bad

    started = int(time.time())
    quick, slow = await _send(core), await _send(core, to=SLOW)
    await _wait_statuses(core, quick, "sent", "delivered", "read")  # the sandbox's 0.05 / 0.1 s
    await _wait_statuses(core, slow, "sent", "delivered", "read")
    quick_at, slow_at = await _stamps(core, quick), await _stamps(core, slow)
    assert quick_at["read"] <= started + 1  # receipts carry the phone's own time of delivery / reading
    assert slow_at["delivered"] >= started + 1 and slow_at["read"] >= started + 2

    reset = await sandbox.admin("PATCH", f"/admin/phones/{SLOW}", {"receipt_delay_s": None, "read_delay_s": None})
    assert (reset["receipt_delay_s"], reset["read_delay_s"]) == (None, None)
    again = await _send(core, to=SLOW)
    await _wait_statuses(core, again, "sent", "delivered", "read")


# --- what the phone sends, on demand ---------------------------------------------------------------------

_LOCATION = {"latitude": 38.8977, "longitude": -77.0365, "name": "The White House", "address": "Washington DC"}
_CONTACTS = [{"name": {"formatted_name": "Sam Lee", "first_name": "Sam"}, "phones": [{"phone": "+12025550124"}]}]


async def test_the_phone_sends_every_inbound_type_in_the_webhook_shape(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    business_message = await _send(core)
    # Let the phone open its session from the business's first: both opening one at once is not this test's topic.
    await _wait_statuses(core, business_message, "sent", "delivered", "read")
    png = samples.png(extra=500)
    cases: list[tuple[dict[str, Any], bool]] = [  # (content, has the contacts block)
        ({"type": "location", "location": _LOCATION}, True),
        ({"type": "contacts", "contacts": _CONTACTS}, True),
        (
            {
                "type": "interactive",
                "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}},
            },
            False,
        ),
        (
            {
                "type": "interactive",
                "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Two", "description": "2nd"}},
            },
            False,
        ),
        ({"type": "button", "button": {"payload": "stop-promos", "text": "Stop promotions"}}, False),
        ({"type": "reaction", "reaction": {"message_id": business_message, "emoji": "\u2764\ufe0f"}}, False),
        ({"type": "text", "text": {"body": "plain"}}, True),
    ]
    for content, with_contacts in cases:
        sent = await sandbox.admin("POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, **content})
        body = await _inbound(core, sent["id"])
        (message,) = body["messages"]
        kind = content["type"]
        assert (message["from"], message["type"], message[kind]) == (PHONE, kind, content[kind])
        assert isinstance(message["timestamp"], str) and message["timestamp"].isdigit()
        if with_contacts:
            assert body["contacts"] == [{"profile": {"name": "Kerry Fisher"}, "wa_id": PHONE}]
        else:
            assert "contacts" not in body

    image = {"data_b64": base64.b64encode(png).decode(), "mime_type": "image/png", "caption": "cat"}
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "image", "image": image}
    )
    (message,) = (await _inbound(core, sent["id"]))["messages"]
    assert message["type"] == "image" and {"id", "sha256", "mime_type", "caption", "file"} <= set(message["image"])

    url = f"http://127.0.0.1:{sandbox.settings.admin_port}/admin/phones/{PHONE}/send"
    for bad in (
        {"type": "location", "location": {"latitude": "north"}},
        {"type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"title": "no id"}}},
        {"type": "reaction", "reaction": {"emoji": "x"}},
        {"type": "button", "button": {"payload": "p"}},
        {"type": "contacts", "contacts": []},
    ):
        async with sandbox.http.post(url, json={"to": BUSINESS_WA_ID, **bad}) as resp:
            assert resp.status == 400, bad


# --- automatic replies -----------------------------------------------------------------------------------

_BUTTONS = {
    "type": "button",
    "body": {"text": "Pick one"},
    "action": {"buttons": [{"type": "reply", "reply": {"id": "opt-1", "title": "One"}}]},
}
_LIST = {
    "type": "list",
    "body": {"text": "Choose"},
    "action": {
        "button": "Options",
        "sections": [{"title": "S", "rows": [{"id": "row-1", "title": "First", "description": "the first"}]}],
    },
}


async def test_auto_replies_of_every_type_reach_the_business(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    seen = 0

    async def reply_to(spec: dict[str, Any], **content: Any) -> tuple[str, dict[str, Any]]:
        nonlocal seen
        await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"auto_reply": spec})
        business_message = await _send(core, **content)
        body = await _next_reply(core, seen)
        seen += 1
        return business_message, body

    msg, body = await reply_to({"type": "text", "text": {"body": "Thanks!"}})
    assert body["messages"][0]["text"] == {"body": "Thanks!"} and body["contacts"][0]["wa_id"] == PHONE

    msg, body = await reply_to({"type": "reaction", "reaction": {"emoji": "\U0001f44d"}})
    assert body["messages"][0]["reaction"] == {"message_id": msg, "emoji": "\U0001f44d"}

    msg, body = await reply_to({"type": "location"})
    assert body["messages"][0]["type"] == "location" and "latitude" in body["messages"][0]["location"]
    assert "contacts" in body

    msg, body = await reply_to({"type": "contacts"})
    assert body["messages"][0]["contacts"][0]["name"]["formatted_name"]

    msg, body = await reply_to({"type": "image"})
    image = body["messages"][0]["image"]
    assert body["messages"][0]["type"] == "image" and "errors" not in body["messages"][0] and "id" in image

    msg, body = await reply_to({"type": "button", "button": {"payload": "yes-please", "text": "Yes please"}})
    assert body["messages"][0]["button"] == {"payload": "yes-please", "text": "Yes please"}

    # interactive: the ids of the business's own buttons / rows, with the context of that message
    msg, body = await reply_to({"type": "interactive"}, type="interactive", interactive=_BUTTONS)
    (message,) = body["messages"]
    assert message["interactive"] == {"type": "button_reply", "button_reply": {"id": "opt-1", "title": "One"}}
    assert message["context"] == {"from": BUSINESS_WA_ID, "id": msg}
    msg, body = await reply_to({"type": "interactive"}, type="interactive", interactive=_LIST)
    assert body["messages"][0]["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "row-1", "title": "First", "description": "the first"},
    }
    given = {"type": "list_reply", "list_reply": {"id": "given", "title": "Given"}}
    msg, body = await reply_to({"type": "interactive", "interactive": given})  # to a text: the given ids
    assert body["messages"][0]["interactive"] == given and "context" not in body["messages"][0]

    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"auto_reply": None})
    quiet = await _send(core)
    await _wait_statuses(core, quiet, "sent", "delivered", "read")
    await asyncio.sleep(0.3)
    assert len(await _replies(core)) == seen

    url = f"http://127.0.0.1:{sandbox.settings.admin_port}/admin/phones/{PHONE}"
    for bad in ({"type": "sticker"}, {"type": "text", "text": {}}, {"type": "text", "extra": 1}, "text"):
        async with sandbox.http.patch(url, json={"auto_reply": bad}) as resp:
            assert resp.status == 400, bad


async def test_a_phone_on_two_devices_answers_once_and_only_what_it_decrypted(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend, {"wa_id": PHONE, "devices": 2})
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"auto_reply": {"type": "reaction"}})
    first = await _send(core)
    reply = await _next_reply(core, 0)
    assert reply["messages"][0]["reaction"]["message_id"] == first

    # one device fails: `delivered` and `failed`, still one reply (device 0 decrypted it)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"devices_failing": [1]})
    second = await _send(core)
    await _wait_statuses(core, second, "sent", "delivered", "read", "failed")
    reply = await _next_reply(core, 1)
    assert reply["messages"][0]["reaction"]["message_id"] == second

    # both fail: nothing decrypted, so nothing answered
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"devices_failing": [0, 1]})
    third = await _send(core)
    await _wait_statuses(core, third, "sent", "failed")
    await asyncio.sleep(0.3)
    assert len(await _replies(core)) == 2
    inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    assert [m["id"] for m in inbox] == [first, second]


# --- 480 / 1028: an identity change must be acknowledged -------------------------------------------------


async def _identity_notices(core: Core) -> list[dict[str, Any]]:
    return [
        m
        for b in await _bodies(core, "inbound_message")
        for m in b["messages"]
        if m["type"] == "system" and m["system"]["type"] == "user_identity_changed"
    ]


async def test_sends_wait_for_the_identity_change_to_be_acknowledged(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    with pytest.raises(ApiError) as info:
        await core.rpc("contacts.get_identity", {"wa_id": PHONE})
    assert info.value.code is ErrorCode.NOT_FOUND
    before = await _send(core)
    await _wait_statuses(core, before, "sent", "delivered", "read")

    await sandbox.admin("POST", f"/admin/phones/{PHONE}/reinstall")
    (notice,) = await eventually(lambda: _identity_notices(core))
    assert notice["identity"]["acknowledged"] is False
    key_hash = notice["identity"]["hash"]
    assert notice["system"]["identity"] == key_hash
    shown = await core.rpc("contacts.get_identity", {"wa_id": PHONE})
    assert shown == {
        "identity": [
            {"hash": key_hash, "created_timestamp": notice["identity"]["created_timestamp"], "acknowledged": False}
        ]
    }

    with pytest.raises(ApiError) as info:  # synchronous 1028 (reference §4): nothing is stored or sent
        await _send(core)
    assert info.value.code is ErrorCode.IDENTITY_ACK_REQUIRED
    with pytest.raises(ApiError) as info:
        await core.rpc("contacts.ack_identity", {"wa_id": PHONE, "hash": "not-the-hash"})
    assert info.value.code is ErrorCode.INVALID_PARAMETER
    with pytest.raises(ApiError) as info:
        await _send(core)
    assert info.value.code is ErrorCode.IDENTITY_ACK_REQUIRED

    acked = await core.rpc("contacts.ack_identity", {"wa_id": PHONE, "hash": key_hash})
    assert acked["identity"][0]["acknowledged"] is True
    after = await _send(core)
    await _wait_statuses(core, after, "sent", "delivered", "read")
    assert (await core.rpc("contacts.get_identity", {"wa_id": PHONE}))["identity"][0]["acknowledged"] is True

    # a second change blocks again; with show_security_notifications off nothing blocks.  (The hash derives from
    # the change's time: the clock moves so that two changes in one second are not taken for a replay.)
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 2})
    await sandbox.admin("POST", f"/admin/phones/{PHONE}/reinstall")
    await eventually(lambda: _count(core, 2))
    with pytest.raises(ApiError) as info:
        await _send(core)
    assert info.value.code is ErrorCode.IDENTITY_ACK_REQUIRED
    await core.rpc("settings.patch_application", {"application": {"show_security_notifications": False}})
    unblocked = await _send(core)
    await _wait_statuses(core, unblocked, "sent", "delivered", "read")
    await sandbox.admin("POST", f"/admin/phones/{PHONE}/reinstall")
    later = await _send(core)
    await _wait_statuses(core, later, "sent", "delivered", "read")
    assert len(await _identity_notices(core)) == 2


async def _count(core: Core, n: int) -> bool:
    return len(await _identity_notices(core)) == n


def _identity_reads(core: Core) -> int:
    return int(core.app.db.stats().get("keys.load_peer_identity", {}).get("count", 0))


async def test_identity_records_are_known_after_a_restart_and_other_sends_read_nothing(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await _wait_statuses(core, await _send(core), "sent", "delivered", "read")
    reads = _identity_reads(core)
    for _ in range(3):
        await _send(core)
    assert _identity_reads(core) == reads  # no identity-change record for this peer: no read per send

    await sandbox.admin("POST", f"/admin/phones/{PHONE}/reinstall")
    await eventually(lambda: _identity_notices(core))
    with pytest.raises(ApiError) as info:
        await _send(core)
    assert info.value.code is ErrorCode.IDENTITY_ACK_REQUIRED

    # A fresh process knows the record from the database, not from having written it.
    await core.app.stop()
    again = await make_core(backend)

    async def connected() -> bool:
        return await again.health() == "connected"

    await eventually(connected)
    with pytest.raises(ApiError) as info:
        await _send(again)
    assert info.value.code is ErrorCode.IDENTITY_ACK_REQUIRED
