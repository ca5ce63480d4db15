"""SANDBOX.md faults "slow media" and "expire media early", and 14-day retention on the sandbox clock.

What the client must show: a slow media host only slows a send down (the upload happens inside
``messages.send``; beyond coreapp's media timeout, 120 s, or the RPC timeout the send answers 1011 and nothing is
stored); an expired blob makes the phone answer ``failed`` (it never shows a file it could not fetch), and a
phone's file that expired before coreapp fetched it still arrives as a message carrying the 400 "Media download
error".  Nothing is lost or reported twice.  The client's media timers follow chatd's clock: an upload is reused
for the same media id for 7 network days, and the upload token (7 days) is renewed on the live session when the
network's clock says it expired or the host refuses it.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson
from sqlalchemy import select

from coreapp.storage.tables import messages
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.media_files import MediaFiles
from tests.coreapp.conftest import BUSINESS_WA_ID, Core, CoreFactory, Sandbox, eventually, register
from tests.sandbox.statuses import wait_statuses
from tests.support import media_samples as samples

PHONE = "12025550199"


async def _core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(db)
    await register(core, sandbox)
    await core.rpc("settings.patch_application", {"application": {"sent_status": True}})
    return core


async def _wait_statuses(core: Core, message_id: str, *expected: str) -> list[dict[str, Any]]:
    return await wait_statuses(core, message_id, *expected, timeout_s=20.0)


async def _inbound(core: Core, message_id: str) -> list[dict[str, Any]]:
    async with core.app.db.engine.connect() as conn:
        rows = list(await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "inbound_message")))
    return [m for r in rows for m in orjson.loads(r.body)["messages"] if m["id"] == message_id]


async def _stored(core: Core, message_id: str) -> int:
    async with core.app.db.engine.connect() as conn:
        return len(list(await conn.execute(select(messages.c.id).where(messages.c.id == message_id))))


async def _connected(core: Core) -> bool:
    return await core.health() == "connected"


async def _inbox_ids(sandbox: Sandbox) -> set[str]:
    return {m["id"] for m in (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]}


async def _send_image(core: Core) -> str:
    meta = await MediaFiles(core.settings.paths.media_dir).save(samples.png(extra=2000), "image/png")
    reply = await core.rpc("messages.send", {"to": PHONE, "type": "image", "image": {"id": meta.id}})
    return str(reply["id"])


def _phone_image() -> dict[str, Any]:
    data = samples.png(extra=3000)
    return {"data_b64": base64.b64encode(data).decode(), "mime_type": "image/png", "caption": "from the phone"}


async def test_fault_kinds_are_validated(sandbox: Sandbox) -> None:
    listed = await sandbox.admin("POST", "/admin/faults", {"kind": "slow_media", "seconds": 2})
    assert {"kind": "slow_media", "seconds": 2.0} in listed["faults"]
    listed = await sandbox.admin("POST", "/admin/faults", {"kind": "expire_media"})
    assert {"kind": "expire_media"} in listed["faults"]
    url = f"http://127.0.0.1:{sandbox.settings.admin_port}/admin/faults"
    async with sandbox.http.post(url, json={"kind": "slow_media", "seconds": 0}) as resp:
        assert resp.status == 400
    assert (await sandbox.admin("DELETE", "/admin/faults"))["faults"] == []


async def test_expired_media_fails_on_the_phone_and_arrives_with_a_download_error(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await sandbox.admin("POST", "/admin/faults", {"kind": "expire_media"})

    # business -> phone: the upload works, the phone cannot fetch it: `failed`, never in its inbox.
    outbound = await _send_image(core)
    statuses = await _wait_statuses(core, outbound, "sent", "failed")
    (failed,) = [s for s in statuses if s["status"] == "failed"]
    assert failed["errors"][0]["code"] == 500
    assert outbound not in await _inbox_ids(sandbox)

    # phone -> business: the file expired before coreapp fetched it: the message arrives with the 400 error.
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "image", "image": _phone_image()}
    )
    (message,) = await eventually(lambda: _inbound(core, sent["id"]))
    assert message["type"] == "image" and message["from"] == PHONE
    (error,) = message["errors"]
    assert (error["code"], error["title"]) == (400, "Media download error") and "404" in error["details"]
    assert "id" not in message["image"] and message["image"]["caption"] == "from the phone"

    # cleared: new files go through; nothing above was lost or repeated.
    await sandbox.admin("DELETE", "/admin/faults")
    after = await _send_image(core)
    await _wait_statuses(core, after, "sent", "delivered", "read")
    again = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "image", "image": _phone_image()}
    )
    (ok,) = await eventually(lambda: _inbound(core, again["id"]))
    assert "errors" not in ok and "id" in ok["image"]
    await _wait_statuses(core, outbound, "sent", "failed")
    assert len(await _inbound(core, sent["id"])) == 1 and await _stored(core, sent["id"]) == 1


async def test_slow_media_host_slows_sends_down_but_loses_nothing(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await sandbox.admin("POST", "/admin/faults", {"kind": "slow_media", "seconds": 1.0})

    started = time.monotonic()
    outbound = await _send_image(core)  # the upload is part of messages.send
    assert time.monotonic() - started >= 1.0
    await _wait_statuses(core, outbound, "sent", "delivered", "read")
    assert outbound in await _inbox_ids(sandbox)  # phones use the store in-process: not slowed

    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "image", "image": _phone_image()}
    )
    (message,) = await eventually(lambda: _inbound(core, sent["id"]))  # coreapp's download waited
    assert "errors" not in message and "id" in message["image"]
    assert await _stored(core, sent["id"]) == 1


async def test_media_retention_follows_the_sandbox_clock(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": False})
    kept = await _send_image(core)
    also_kept = await _send_image(core)
    await _wait_statuses(core, also_kept, "sent")
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 13 * 86400})
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    await _wait_statuses(core, kept, "sent", "delivered", "read")  # 13 days: still there
    await _wait_statuses(core, also_kept, "sent", "delivered", "read")

    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": False})
    # A new login hands out a fresh media token too (the live session renews it itself, see below).
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")
    await eventually(lambda: _connected(core))
    late = await _send_image(core)
    await _wait_statuses(core, late, "sent")
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 14 * 86400 + 60})
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    statuses = await _wait_statuses(core, late, "sent", "failed")  # 14 days by chatd's clock: gone
    assert [s["errors"][0]["code"] for s in statuses if s["status"] == "failed"] == [500]
    assert late not in await _inbox_ids(sandbox)


async def _direct_path(core: Core, message_id: str) -> str:
    async with core.app.db.engine.connect() as conn:
        content = (await conn.execute(select(messages.c.content).where(messages.c.id == message_id))).scalar_one()
    return str(orjson.loads(content)["image"]["direct_path"])


async def test_uploads_are_reused_and_the_media_token_renewed_by_the_sandbox_clock(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    chat = core.app.chat
    assert chat is not None
    meta = await MediaFiles(core.settings.paths.media_dir).save(samples.png(extra=2500), "image/png")

    async def send() -> str:
        reply = await core.rpc("messages.send", {"to": PHONE, "type": "image", "image": {"id": meta.id}})
        return str(reply["id"])

    first, second = await send(), await send()
    assert await _direct_path(core, first) == await _direct_path(core, second)  # one upload serves both sends

    before, generation = chat.server_now(), chat.generation
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 8 * 86400})

    async def saw_the_jump() -> bool:  # the next Pong carries chatd's new time
        return chat.server_now() >= before + 8 * 86400

    await eventually(saw_the_jump, timeout_s=20.0)
    # 8 days by chatd's clock: the upload is past its reuse window and the login's token (7 days) expired.
    # The client renews the token on the same session and uploads the file again; the phone gets all three.
    third = await send()
    assert await _direct_path(core, third) != await _direct_path(core, first)
    assert chat.generation == generation
    for message_id in (first, second, third):
        await _wait_statuses(core, message_id, "sent", "delivered", "read")
    assert {first, second, third} <= await _inbox_ids(sandbox)


async def test_a_refused_media_token_is_renewed_and_the_upload_retried(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    assert core.app.media is not None and core.app.chat is not None
    generation = core.app.chat.generation
    # A token the media host does not know (as after the host forgot its tokens); its expiry is still ahead.
    core.app.media._token = "revoked-" + "x" * 40
    sent = await _send_image(core)  # 401 -> GetMediaConn -> the same upload again, inside this one send
    await _wait_statuses(core, sent, "sent", "delivered", "read")
    assert sent in await _inbox_ids(sandbox) and core.app.chat.generation == generation
