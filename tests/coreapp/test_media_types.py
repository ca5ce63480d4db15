"""Every media message type, sent by uploaded id, reaches a chatd phone with the same bytes and type.

Each case stores a sample the way ``POST /v1/media`` does (type checked against the bytes, then streamed to the
media volume in chunks), sends it by id and reads the phone's inbox.  The phone only lists a file it
downloaded, decrypted with the key for that message type and checked against the sender's hashes, so
"same sha256 and mime_type in the inbox" proves the bytes went through encryption, the media host and
decryption unchanged.  Tail lengths vary so the AES-CBC padding is hit at, below and across a block.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from coreapp.storage.tables import messages
from shared.config import DbSettings
from shared.media_files import MediaFiles, MediaMeta
from shared.media_types import HEAD_BYTES, check
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register
from tests.support import media_samples as samples

CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class Case:
    kind: str
    content_type: str
    sample: Callable[[], bytes]
    tail: int
    """Random bytes appended after the sample's own (the type checks only read the head)."""
    extra: dict[str, str] = field(default_factory=dict)
    """``caption`` / ``filename``, where the type takes them; the phone must show them too."""


CASES = [
    Case("image", "image/png", lambda: samples.png(extra=40_000), 0, {"caption": "a png"}),
    Case("image", "image/jpeg", lambda: samples.jpeg(70_000), 1),
    Case("audio", "audio/ogg; codecs=opus", samples.ogg_opus, 100_000),
    Case("audio", "audio/aac", samples.aac, 15),
    Case("audio", "audio/mpeg", samples.mp3, 16),
    Case("video", "video/mp4", samples.mp4, 300_001, {"caption": "a clip"}),
    Case("document", "application/pdf", samples.pdf, 4096, {"caption": "Q3", "filename": "report.pdf"}),
    Case("sticker", "image/webp", samples.webp, 2000),
]


async def upload(files: MediaFiles, content_type: str, data: bytes) -> MediaMeta:
    """What ``POST /v1/media`` does with a body: check the head against the declared type, stream, commit."""
    mime = check(content_type, data[:HEAD_BYTES])
    writer = await files.open_writer()
    try:
        for start in range(0, len(data), CHUNK_BYTES):
            await writer.write(data[start : start + CHUNK_BYTES])
        return await writer.commit(mime)
    finally:
        await writer.abort()


async def ready_core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(db)
    await register(core, sandbox)
    return core


async def inbox_entry(sandbox: Sandbox, message_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return next((m for m in inbox if m["id"] == message_id), None)

    found: dict[str, Any] = await eventually(find)
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.kind}-{c.content_type.split(';')[0].replace('/', '_')}")
async def test_media_type_reaches_the_phone_unchanged(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, case: Case
) -> None:
    core = await ready_core(sandbox, make_core, backend)
    data = case.sample() + os.urandom(case.tail)
    meta = await upload(MediaFiles(core.settings.paths.media_dir), case.content_type, data)
    assert meta.mime_type == case.content_type and meta.size == len(data)

    body = {"to": PHONE, "type": case.kind, case.kind: {"id": meta.id, **case.extra}}
    message_id = (await core.rpc("messages.send", body))["id"]
    entry = await inbox_entry(sandbox, message_id)
    assert entry["type"] == case.kind and entry["from"] == BUSINESS_WA_ID
    got = entry[case.kind]
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["mime_type"] == case.content_type
    assert got["file_length"] == len(data)
    assert {k: got.get(k) for k in case.extra} == case.extra
    assert "media_key" not in got

    async def delivered() -> bool:
        async with core.app.db.engine.connect() as conn:
            status = await conn.scalar(select(messages.c.status).where(messages.c.id == message_id))
        return status in ("delivered", "read")

    await eventually(delivered)


def test_cases_cover_every_media_message_type() -> None:
    assert {case.kind for case in CASES} == {"image", "audio", "video", "document", "sticker"}
