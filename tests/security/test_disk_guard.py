"""Disk guard everywhere it matters (issue 12 point 9): with the data or media directory under
``WA_DISK_MIN_FREE_MB`` an upload is refused (1016 / 503, nothing half-written) and inbound messages are held
unacked, not lost, then stored and delivered once space returns.  A full disk is simulated as in
tests/maintenance/test_disk.py: the threshold is moved above the real free space, then back to 0."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from coreapp.storage.tables import messages
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.media_types import HEAD_BYTES
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register
from tests.support import media_samples as samples
from tests.support.services import db_settings_for
from tests.webapp.conftest import Api
from webapp.app import WebApp
from webapp.disk import WebDiskGuard
from webapp.routes.media import DISK_RECHECK_BYTES

HUGE = 1 << 62


# --- coreapp: inbound is held, never acked unstored -------------------------------------------------------------


async def _stored(core: Core, message_id: str) -> int:
    async with core.app.db.engine.connect() as conn:
        query = select(func.count()).select_from(messages).where(messages.c.id == message_id)
        return int(await conn.scalar(query) or 0)


async def _inbound_hooks(core: Core, message_id: str) -> int:
    async with core.app.db.engine.connect() as conn:
        bodies = await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "inbound_message"))
        return sum(1 for (body,) in bodies if message_id in body)


async def _pending_pushes(sandbox: Sandbox) -> int:
    businesses = (await sandbox.admin("GET", "/admin/businesses"))["businesses"]
    (business,) = [b for b in businesses if b["wa_id"] == BUSINESS_WA_ID]
    return int(business["pending_pushes"])


def _gauge(stats: dict[str, Any], name: str) -> float:
    (sample,) = stats[name]["data"]
    return float(sample["value"])


async def test_inbound_waits_unacked_while_the_disk_is_full(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(sqlite_db)
    await register(core, sandbox)
    guard = core.app.disk
    guard.min_free_bytes = HUGE
    await guard.check()
    assert {e["code"] for e in (await core.rpc("health.get"))["errors"]} == {1016}

    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "held"}}
    )

    async def held() -> bool:
        return guard.inbound_held == 1

    await eventually(held)
    stats = (await core.rpc("stats.app"))["metrics"]
    assert _gauge(stats, "inbound_paused") == 1
    assert await _stored(core, sent["id"]) == 0 and await _inbound_hooks(core, sent["id"]) == 0
    assert await _pending_pushes(sandbox) >= 1  # not acked: the network still holds it

    # A reconnect while held cancels the wait; the network replays the push, and it is held again.
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")
    await eventually(held)
    assert await _stored(core, sent["id"]) == 0 and await _pending_pushes(sandbox) >= 1

    guard.min_free_bytes = 0
    await guard.check()

    async def delivered() -> bool:
        return await _stored(core, sent["id"]) == 1 and await _pending_pushes(sandbox) == 0

    await eventually(delivered)
    assert await _inbound_hooks(core, sent["id"]) == 1
    assert guard.inbound_held == 0
    assert _gauge((await core.rpc("stats.app"))["metrics"], "inbound_paused") == 0
    assert "errors" not in await core.rpc("health.get")


# --- webapp: uploads are refused, nothing half-written ----------------------------------------------------------


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


def _guard(webapp: WebApp) -> WebDiskGuard:
    assert webapp.disk is not None
    return webapp.disk


def _media_files(tmp_path: Path) -> list[Path]:
    media = tmp_path / "data" / "media"
    return sorted(media.iterdir()) if media.exists() else []


async def _upload(admin: Api, data: bytes) -> tuple[int, Any]:
    status, body, _ = await admin.call("POST", "/v1/media", data=data, headers={"Content-Type": "image/png"})
    return status, body


async def test_upload_refused_while_the_disk_is_full(admin: Api, webapp: WebApp, tmp_path: Path) -> None:
    guard = _guard(webapp)
    assert guard.min_free_bytes == 10 * 1024 * 1024  # WA_DISK_MIN_FREE_MB, shared with coreapp
    guard.min_free_bytes = HUGE
    status, body = await _upload(admin, samples.png(extra=10_000))
    assert status == 503, body
    (error,) = body["errors"]
    assert error["code"] == 1016 and "free in the media directory" in error["details"]
    assert _media_files(tmp_path) == []  # not a byte written, not even a .part

    _, health, _ = await admin.call("GET", "/v1/health")
    assert health["health"]["gateway_status"] == "connected"
    assert {e["code"] for e in health["health"]["errors"]} == {1016}
    assert any("media directory" in e["details"] for e in health["health"]["errors"])
    _, text, _ = await admin.call("GET", "/metrics?format=prometheus")
    assert 'webapp_disk_critical{dir="media"} 1.0' in text

    guard.min_free_bytes = 0
    status, body = await _upload(admin, samples.png(extra=10_000))
    assert status == 201, body
    assert len(_media_files(tmp_path)) == 2  # the file and its sidecar
    _, health, _ = await admin.call("GET", "/v1/health")
    assert "errors" not in health["health"]
    _, text, _ = await admin.call("GET", "/metrics?format=prometheus")
    assert 'webapp_disk_critical{dir="media"} 0.0' in text


class _Raw:
    def __init__(self, webapp: WebApp, tmp_path: Path) -> None:
        self.port = int(webapp.url.rsplit(":", 1)[1])
        self.ctx = ssl.create_default_context(cafile=str(tmp_path / "data" / "web" / "server.crt"))

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx, server_hostname="localhost")


async def _response(reader: asyncio.StreamReader) -> tuple[int, Any]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return int(lines[0].split(" ")[1]), orjson.loads(body)


async def test_upload_that_would_fill_the_disk_is_refused_before_writing(
    admin: Api, webapp: WebApp, tmp_path: Path
) -> None:
    """The declared length counts: 40 MB on a volume with 30 MB above the threshold is refused at once."""
    guard = _guard(webapp)
    free = (await guard.check())["media"].free_bytes
    guard.min_free_bytes = free - 30 * 1024 * 1024
    reader, writer = await _Raw(webapp, tmp_path).open()
    try:
        writer.write(
            (
                f"POST /v1/media HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin.token}\r\n"
                f"Content-Type: image/png\r\nContent-Length: {40 * 1024 * 1024}\r\n\r\n"
            ).encode()
            + samples.png()
        )
        await writer.drain()
        status, body = await _response(reader)  # answered without the 40 MB being sent
    finally:
        writer.close()
    assert status == 503 and body["errors"][0]["code"] == 1016, body
    assert "would leave less than" in body["errors"][0]["details"]
    assert _media_files(tmp_path) == []


async def test_disk_filling_during_an_upload_stops_it_and_removes_the_part(
    admin: Api, webapp: WebApp, tmp_path: Path
) -> None:
    guard = _guard(webapp)
    reader, writer = await _Raw(webapp, tmp_path).open()
    try:
        writer.write(
            (
                f"POST /v1/media HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin.token}\r\n"
                "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        head = samples.png(extra=HEAD_BYTES)  # enough for the type check: the file is opened after it
        writer.write(b"%x\r\n%s\r\n" % (len(head), head))
        await writer.drain()

        async def part_written() -> bool:
            return any(p.name.endswith(".part") for p in _media_files(tmp_path))

        await eventually(part_written)
        guard.min_free_bytes = HUGE  # the disk "fills up" while the upload streams
        block = b"\0" * (256 * 1024)
        for _ in range(DISK_RECHECK_BYTES // len(block) + 2):
            writer.write(b"%x\r\n%s\r\n" % (len(block), block))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        status, body = await _response(reader)
    finally:
        writer.close()
    assert status == 503 and body["errors"][0]["code"] == 1016, body
    assert _media_files(tmp_path) == []
