"""Backup on install A, restore on a fresh install B: same number, keys, sessions and settings; B sends again."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from coreapp.services.backup import from_document, seal, unseal
from coreapp.storage.tables import messages
from shared.config import DbSettings
from shared.errors import ApiError
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register
from tests.support.services import drop_database, unique_prefix

PASSWORD = "correct horse battery staple"


async def _inbox_has(sandbox: Sandbox, message_id: str, body: str) -> bool:
    inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    return any(m["id"] == message_id and m["text"]["body"] == body for m in inbox)


async def _send(core: Core, sandbox: Sandbox, body: str) -> None:
    message_id = (await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": body}}))["id"]
    await eventually(lambda: _inbox_has(sandbox, message_id, body))


async def _code(call: Any) -> int:
    with pytest.raises(ApiError) as info:
        await call
    return info.value.code.code


@pytest.fixture
async def second_db(backend: DbSettings, tmp_path: Path) -> Any:
    """Another fresh database on the same server as ``backend`` (install B)."""
    settings = backend.model_copy(update={"name_prefix": unique_prefix(), "sqlite_path": tmp_path / "b.db"})
    try:
        yield settings
    finally:
        await drop_database(settings)


async def test_restore_on_fresh_install_sends_and_receives(
    backend: DbSettings, second_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    a = await make_core(backend)
    await register(a, sandbox)
    await _send(a, sandbox, "from A")
    await a.rpc("settings.patch_application", {"application": {"webhooks": {"url": "https://hooks.example/x"}}})
    provider = {"name": "cdn", "type": "www", "config": {"bearer": "s3cr3t"}}
    await a.rpc("settings.post_media_providers", {"providers": [provider]})
    await a.rpc("settings.set_profile_about", {"text": "Open 9-5"})

    blob = (await a.rpc("settings.backup", {"password": PASSWORD}))["data"]
    assert b"s3cr3t" not in base64.b64decode(blob) and b"Open 9-5" not in base64.b64decode(blob)
    await a.app.stop()  # one instance per number

    b = await make_core(second_db)
    assert await b.health() == "unregistered"
    assert await _code(b.rpc("settings.restore", {"password": "wrong", "data": blob})) == 1009
    corrupt = blob[:-8] + ("A" if blob[-8] != "A" else "B") + blob[-7:]  # always a different character
    assert corrupt != blob
    assert await _code(b.rpc("settings.restore", {"password": PASSWORD, "data": corrupt})) == 1009
    assert await _code(b.rpc("settings.restore", {"password": PASSWORD, "data": "not base64!"})) == 1009
    assert await _code(b.rpc("settings.restore", {"password": "", "data": blob})) == 1008
    assert await b.health() == "unregistered"

    assert await b.rpc("settings.restore", {"password": PASSWORD, "data": blob}) == {}

    async def connected() -> bool:
        return await b.health() == "connected"

    await eventually(connected)
    app = (await b.rpc("settings.get_application"))["application"]
    assert app["webhooks"]["url"] == "https://hooks.example/x" and app["wa_id"] == BUSINESS_WA_ID
    assert (await b.rpc("settings.get_media_providers"))["providers"][0]["config"] == {"bearer": "****"}
    assert await b.app.stores.settings.get("media_providers") == [provider]  # stored exactly as posted
    assert (await b.rpc("settings.get_profile_about"))["text"] == "Open 9-5"

    # The phone's session with the (same) identity goes on: B's text arrives decrypted, twice over the ratchet.
    await _send(b, sandbox, "from B")
    await _send(b, sandbox, "from B again")
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "hi B"}}
    )

    async def received() -> bool:
        async with b.app.db.engine.connect() as conn:
            row = (await conn.execute(select(messages.c.content).where(messages.c.id == sent["id"]))).first()
        return row is not None and orjson.loads(row.content)["text"]["body"] == "hi B"

    await eventually(received)


def test_blob_round_trip_and_tamper() -> None:
    document: dict[str, Any] = {
        "version": 1,
        "registration": None,
        "identity": None,
        "sessions": [],
        "settings": {"a": "1"},
    }
    blob = seal("pw", document)
    assert unseal("pw", blob) == document
    assert from_document(unseal("pw", blob)).settings == {"a": "1"}
    raw = bytearray(base64.b64decode(blob))
    raw[6] ^= 1  # the salt is bound in as associated data
    with pytest.raises(ApiError):
        unseal("pw", base64.b64encode(bytes(raw)).decode())
    with pytest.raises(ApiError):
        unseal("pw", base64.b64encode(b"OPBK\x09" + bytes(40)).decode())
    for bad in ({"registration": {"cc": 1}}, {"settings": {"a": 1}}, {"sessions": [[1]]}):
        with pytest.raises(ApiError):
            from_document(bad)
