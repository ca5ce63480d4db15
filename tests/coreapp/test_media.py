"""Media end to end: coreapp + in-process chatd (media store over HTTPS, phones) + a real database per backend.

The phone only shows a file it downloaded, decrypted and checked, so "same sha256 in the inbox" proves the
bytes went through encryption, the media host and decryption unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from sqlalchemy import select

from coreapp.storage.tables import messages
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from shared.media_files import MediaFiles
from shared.wire.media import encrypt_media
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register
from tests.support import media_samples as samples

BEARER = "provider-secret-token"
BASIC = ("media-user", "p@ss:w0rd!")  # a colon in the password: basic auth must not split on it


async def _ready_core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(db)
    await register(core, sandbox)
    return core


async def _inbox_entry(sandbox: Sandbox, message_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return next((m for m in inbox if m["id"] == message_id), None)

    found: dict[str, Any] = await eventually(find)
    return found


async def _status(core: Core, message_id: str) -> str | None:
    async with core.app.db.engine.connect() as conn:
        return await conn.scalar(select(messages.c.status).where(messages.c.id == message_id))


async def _inbound_hooks(core: Core) -> list[dict[str, Any]]:
    async with core.app.db.engine.connect() as conn:
        rows = await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "inbound_message"))
        return [orjson.loads(row.body) for row in rows]


async def test_send_image_by_id(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    data = samples.png(extra=300_000)
    meta = await MediaFiles(core.settings.paths.media_dir).save(data, "image/png")

    body = {"to": PHONE, "type": "image", "image": {"id": meta.id, "caption": "look"}}
    message_id = (await core.rpc("messages.send", body))["id"]
    entry = await _inbox_entry(sandbox, message_id)
    assert entry["type"] == "image" and entry["from"] == BUSINESS_WA_ID
    image = entry["image"]
    assert image["sha256"] == hashlib.sha256(data).hexdigest()
    assert (image["mime_type"], image["file_length"], image["caption"]) == ("image/png", len(data), "look")
    assert "media_key" not in image

    async def delivered() -> bool:
        return await _status(core, message_id) in ("delivered", "read")

    await eventually(delivered)

    # The media host keeps blobs 14 days by the sandbox clock, for anyone holding the URL.
    url = f"https://127.0.0.1:{sandbox.settings.media_port}/media/{image['media_id']}"
    tls = ssl.create_default_context(cafile=str(sandbox.chatd.ca_file))
    async with sandbox.http.get(url, ssl=tls) as resp:
        assert resp.status == 200 and len(await resp.read()) > len(data)
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 15 * 24 * 3600})
    async with sandbox.http.get(url, ssl=tls) as resp:
        assert resp.status == 404


async def test_send_errors(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    cases = [
        ({"id": str(uuid.uuid4())}, ErrorCode.NOT_FOUND),
        ({"id": "../../etc/passwd"}, ErrorCode.NOT_FOUND),
        ({}, ErrorCode.MISSING_PARAMETER),
        ({"link": "ftp://example.invalid/x.png"}, ErrorCode.INVALID_PARAMETER),
    ]
    for media, code in cases:
        with pytest.raises(ApiError) as info:
            await core.rpc("messages.send", {"to": PHONE, "type": "image", "image": media})
        assert info.value.code is code, (media, info.value)
    pdf = await MediaFiles(core.settings.paths.media_dir).save(samples.pdf(), "application/pdf")
    with pytest.raises(ApiError) as info:  # a PDF is a document, not an image
        await core.rpc("messages.send", {"to": PHONE, "type": "image", "image": {"id": pdf.id}})
    assert info.value.code is ErrorCode.INVALID_PARAMETER


@pytest.fixture
async def file_server() -> AsyncIterator[tuple[str, bytes]]:
    """A loopback HTTP server that serves one PDF, only with a provider's bearer token or basic credentials."""
    data = samples.pdf() + b"%" + bytes(range(256)) * 40
    accepted = {f"Bearer {BEARER}", "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()}

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") not in accepted:
            return web.Response(status=401)
        return web.Response(body=data, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/files/report.pdf", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/files/report.pdf", data
    finally:
        await runner.cleanup()


async def test_send_document_by_link_with_provider(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, file_server: tuple[str, bytes]
) -> None:
    link, data = file_server
    core = await _ready_core(sandbox, make_core, backend)
    prefix = link.rsplit("/", 1)[0] + "/"
    await core.app.stores.settings.put(
        "media_providers", [{"name": "acme", "type": "www", "url_prefix": prefix, "config": {"bearer": BEARER}}]
    )
    document = {"link": link, "provider": {"name": "acme"}, "filename": "report.pdf", "caption": "Q3"}
    message_id = (await core.rpc("messages.send", {"to": PHONE, "type": "document", "document": document}))["id"]
    entry = await _inbox_entry(sandbox, message_id)
    got = entry["document"]
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert (got["mime_type"], got["filename"], got["caption"]) == ("application/pdf", "report.pdf", "Q3")

    # Without the provider the server answers 401; the client is told only that the link could not be fetched.
    for provider, why in ((None, "media could not be fetched"), ({"name": "nobody"}, "nobody")):
        bad = {"link": link, **({"provider": provider} if provider else {})}
        with pytest.raises(ApiError) as info:
            await core.rpc("messages.send", {"to": PHONE, "type": "document", "document": bad})
        assert info.value.code is ErrorCode.INVALID_PARAMETER and why in (info.value.details or "")


async def test_phone_fails_on_a_tampered_blob(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": False})
    meta = await MediaFiles(core.settings.paths.media_dir).save(samples.jpeg(5000), "image/jpeg")
    message_id = (await core.rpc("messages.send", {"to": PHONE, "type": "image", "image": {"id": meta.id}}))["id"]

    async def sent() -> bool:
        return await _status(core, message_id) == "sent"

    await eventually(sent)
    blobs = [p for p in (sandbox.settings.data_dir / "media").iterdir() if not p.name.startswith(".")]
    assert len(blobs) == 1
    blob = bytearray(blobs[0].read_bytes())
    blob[100] ^= 0xFF
    blobs[0].write_bytes(bytes(blob))
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})

    async def failed() -> bool:
        return await _status(core, message_id) == "failed"

    await eventually(failed)
    inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    assert all(m["id"] != message_id for m in inbox)


async def test_phone_sends_an_image(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    data = samples.png(extra=50_000)
    image = {"data_b64": base64.b64encode(data).decode(), "mime_type": "image/png", "caption": "from the phone"}
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "image", "image": image}
    )

    async def hook() -> dict[str, Any] | None:
        for body in await _inbound_hooks(core):
            if body["messages"][0]["id"] == sent["id"]:
                return body
        return None

    body = await eventually(hook)
    assert "contacts" not in body  # reference §3.1: no contacts block for media
    (message,) = body["messages"]
    assert message["type"] == "image" and message["from"] == PHONE
    got = message["image"]
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert (got["mime_type"], got["caption"]) == ("image/png", "from the phone")
    assert set(got) == {"id", "mime_type", "sha256", "caption", "file"}
    assert Path(got["file"]).read_bytes() == data
    assert Path(got["file"]).parent == core.settings.paths.media_dir.resolve()
    stored = await MediaFiles(core.settings.paths.media_dir).meta(got["id"])
    assert stored is not None and stored.sha256 == got["sha256"]

    # media.auto_download without images: the webhook tells about the file but nothing is fetched.
    await core.rpc("settings.patch_application", {"application": {"media": {"auto_download": ["document"]}}})
    second = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "image", "image": image}
    )

    async def second_hook() -> dict[str, Any] | None:
        for body in await _inbound_hooks(core):
            if body["messages"][0]["id"] == second["id"]:
                return body
        return None

    got = (await eventually(second_hook))["messages"][0]["image"]
    assert set(got) == {"mime_type", "sha256", "caption"}


async def test_media_store_needs_the_session_token(sandbox: Sandbox) -> None:
    tls = ssl.create_default_context(cafile=str(sandbox.chatd.ca_file))
    url = f"https://127.0.0.1:{sandbox.settings.media_port}/media"
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with sandbox.http.post(url, data=b"x" * 32, headers=headers, ssl=tls) as resp:
            assert resp.status == 401
    async with sandbox.http.get(url + "/" + "A" * 43, ssl=tls) as resp:
        assert resp.status == 404
    with pytest.raises(aiohttp.ClientConnectorCertificateError):  # HTTPS with chatd's own CA only
        async with sandbox.http.get(url + "/x"):
            pass


async def test_inbound_download_failure_is_reported(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _ready_core(sandbox, make_core, sqlite_db)
    assert core.app.media is not None
    _, keys = encrypt_media(b"never uploaded", "document")
    obj = {
        "direct_path": "/media/" + "B" * 43,
        "mime_type": "application/pdf",
        "filename": "x.pdf",
        **keys.to_content(),
    }
    content = await core.app.media.receive({"type": "document", "document": obj})
    assert content["document"] == {"filename": "x.pdf", "mime_type": "application/pdf", "sha256": keys.sha256.hex()}
    (error,) = content["errors"]
    assert (error["code"], error["title"]) == (400, "Media download error") and "404" in error["details"]


async def test_send_document_by_link_with_a_basic_auth_provider(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, file_server: tuple[str, bytes]
) -> None:
    link, data = file_server
    core = await _ready_core(sandbox, make_core, backend)
    basic = {"username": BASIC[0], "password": BASIC[1]}
    prefix = link.rsplit("/", 1)[0] + "/"
    await core.app.stores.settings.put(
        "media_providers", [{"name": "files", "type": "www", "url_prefix": prefix, "config": {"basic": basic}}]
    )
    document = {"link": link, "provider": {"name": "files"}, "filename": "report.pdf"}
    message_id = (await core.rpc("messages.send", {"to": PHONE, "type": "document", "document": document}))["id"]
    entry = await _inbox_entry(sandbox, message_id)
    assert entry["document"]["sha256"] == hashlib.sha256(data).hexdigest()
