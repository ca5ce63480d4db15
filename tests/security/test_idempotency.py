"""Retry-safe sends and uploads (``Idempotency-Key``, issue 12 point 7) on the whole product in one process.

The same key with the same request answers the first success again and sends nothing new (the phone decrypts the
message once); with another request it is 409 / 1004; a malformed key is 400 / 1009.  Keys are in the database:
they hold across a coreapp or webapp restart, stop counting after 24 h, and GC deletes them.  The lost answer
between separate processes is ``test_idempotency_e2e.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from sqlalchemy import func, select, update
from sqlalchemy import text as sql

from coreapp.models import IdempotencyClaim, IdempotencyRecord, MessageDirection, MessageStatus, NewMessage
from coreapp.services.accept import MessageAcceptor
from coreapp.storage.idempotency import IdempotencyStore
from coreapp.storage.messages import MessageStore
from coreapp.storage.tables import messages
from coreapp.storage.tables_idempotency import message_idempotency
from shared.bus.contract import messages as contract
from shared.config import DbEngine, DbSettings
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.idempotency import fingerprint, key_digest
from shared.ids import WaId, new_message_id
from shared.message_types import MessageType
from shared.tasks import TaskSupervisor
from tests.coreapp.conftest import PHONE, eventually
from tests.security.stack import Stack, StackFactory
from tests.support.media_samples import SAMPLES_BY_TYPE
from webapp.storage import media_keys


def text(body: str) -> dict[str, Any]:
    return {"to": PHONE, "type": "text", "text": {"body": body}}


def new_key() -> str:
    return f"retry-{uuid.uuid4()}"


async def stored_with_body(stack: Stack, body: str) -> int:
    """Outbound rows whose content carries ``body`` (the phone only ever shows what was stored)."""
    async with stack.core.db.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(messages).where(messages.c.content.contains(body)))
    return int(count or 0)


async def delivered_once(stack: Stack, body: str, message_id: str) -> None:
    """The phone decrypts ``body`` under ``message_id``, and after its ``read`` still exactly once."""

    async def read() -> bool:
        async with stack.core.db.engine.connect() as conn:
            status = await conn.scalar(select(messages.c.status).where(messages.c.id == message_id))
        return status == "read"

    await eventually(read, 20)
    await asyncio.sleep(0.3)  # a second copy would be right behind the first
    assert [m["id"] for m in await stack.inbox(body)] == [message_id]
    assert await stored_with_body(stack, body) == 1


async def test_the_same_key_and_body_twice_is_one_message(stack: Stack) -> None:
    key, body = new_key(), f"once {uuid.uuid4()}"
    first = await stack.send(text(body), key)
    assert first[0] == 201, first
    second = await stack.send(text(body), key)
    assert second == first  # same status, same body (meta included)
    # The same request written differently (members reordered, "+" in the number) is the same request.
    reordered = {"text": {"body": body}, "type": "text", "to": "+" + PHONE}
    assert await stack.send(reordered, key) == first
    await delivered_once(stack, body, first[1]["messages"][0]["id"])


async def test_concurrent_sends_with_one_key_store_one_message(stack: Stack) -> None:
    key, body = new_key(), f"racing {uuid.uuid4()}"
    answers = await asyncio.gather(*(stack.send(text(body), key) for _ in range(8)))
    assert {status for status, _ in answers} == {201}, answers
    ids = {doc["messages"][0]["id"] for _, doc in answers}
    assert len(ids) == 1, answers
    await delivered_once(stack, body, ids.pop())


async def lock_waits(stack: Stack) -> int:
    """Statements waiting for a lock right now (PostgreSQL), or keys being cleared (MariaDB, where only a lock
    holds them for longer than a moment); SQLite cannot tell: 0."""
    engine = stack.settings.db.engine
    if engine is DbEngine.SQLITE:
        return 0
    query = (
        "SELECT COUNT(*) FROM pg_locks WHERE NOT granted"
        if engine is DbEngine.PGSQL
        else "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DELETE FROM message_idempotency%'"
    )
    async with stack.core.db.engine.connect() as conn:
        return int(await conn.scalar(sql(query)) or 0)


async def test_accept_batches_racing_another_transaction_for_a_key_answer_its_message(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """Another coreapp on the database (HA later) stores a key while two accept paths are storing it too: they wait
    for it, and then answer its message instead of storing theirs.  On PostgreSQL both have read the key as unknown
    and fail on the unique key, so each re-runs its batch (the ``IntegrityError`` path); MariaDB's locking read and
    SQLite's single writer make them wait before reading."""
    key, body = new_key(), f"racing coreapps {uuid.uuid4()}"
    claim = IdempotencyClaim(key_digest(key), fingerprint(text(body)))
    content = orjson.dumps({"type": "text", "text": {"body": body}, "preview_url": False}).decode()

    def message() -> NewMessage:
        peer = WaId(PHONE)
        return NewMessage(
            new_message_id(),
            MessageDirection.OUT,
            peer,
            MessageType.TEXT,
            content,
            MessageStatus.ACCEPTED,
            int(time.time()),
        )

    first, ours, theirs = message(), message(), message()
    db = await Database.connect(stack.settings.db)  # a second coreapp's own pool
    supervisor = TaskSupervisor("other-coreapp")
    other = MessageAcceptor(db, MessageStore(db), IdempotencyStore(db), supervisor, lambda: None)
    other.start()
    caplog.set_level(logging.INFO, logger="openprem.coreapp.outbound")
    try:
        async with stack.core.db.engine.connect() as holder:  # the first coreapp, mid-transaction
            async with holder.begin():
                await MessageStore(stack.core.db).insert_many_txn(holder, [first])
                record = IdempotencyRecord(claim.key_sha256, claim.request_sha256, first.id)
                await IdempotencyStore(stack.core.db).insert_many_txn(holder, [record])
                racing = asyncio.gather(stack.core.core.acceptor.accept(ours, claim), other.accept(theirs, claim))
                if stack.settings.db.engine is DbEngine.SQLITE:
                    await asyncio.sleep(0.5)  # both wait for the write lock (BEGIN IMMEDIATE)
                else:
                    await eventually(lambda: _at_least(lock_waits(stack), 2), 15)
            ids = await racing
    finally:
        await other.stop()
        await supervisor.close()
        await db.close()
    assert ids == [first.id, first.id]
    async with stack.core.db.engine.connect() as conn:
        stored = set(await conn.scalars(select(messages.c.id).where(messages.c.content.contains(body))))
    assert stored == {first.id}
    if stack.settings.db.engine is DbEngine.PGSQL:
        assert caplog.text.count("reading the keys again") == 2, caplog.text


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


async def test_the_same_key_with_another_body_is_409_1004(stack: Stack) -> None:
    key, body = new_key(), f"first {uuid.uuid4()}"
    status, doc = await stack.send(text(body), key)
    assert status == 201, doc
    other = f"second {uuid.uuid4()}"
    status, error = await stack.send(text(other), key)
    assert status == 409, error
    assert error["errors"][0]["code"] == 1004
    assert "Idempotency-Key" in error["errors"][0]["details"]
    assert "meta" in error
    assert await stack.send(text(body), key) == (201, doc)  # the key still stands for the first request
    await delivered_once(stack, body, doc["messages"][0]["id"])
    assert await stack.inbox(other) == [] and await stored_with_body(stack, other) == 0
    # A key is not tied to the endpoint's other requests: without one, or with a new one, the body is new.
    status, fresh = await stack.send(text(other), new_key())
    assert status == 201 and fresh["messages"][0]["id"] != doc["messages"][0]["id"]


async def test_keys_survive_a_coreapp_restart(stack: Stack) -> None:
    key, body = new_key(), f"restart {uuid.uuid4()}"
    status, doc = await stack.send(text(body), key)
    assert status == 201, doc
    await stack.restart_core()
    assert await stack.send(text(body), key) == (201, doc)
    status, error = await stack.send(text("something else"), key)
    assert (status, error["errors"][0]["code"]) == (409, 1004)
    await delivered_once(stack, body, doc["messages"][0]["id"])


async def test_a_stored_key_is_answered_while_the_chat_is_down(stack: Stack) -> None:
    """The retry of a send whose answer was lost needs only the database: it gets its id while new sends are
    refused with 1011, and nothing is composed or sent again."""
    key, body = new_key(), f"offline {uuid.uuid4()}"
    status, doc = await stack.send(text(body), key)
    assert status == 201, doc
    await delivered_once(stack, body, doc["messages"][0]["id"])
    await stack.sandbox.admin("POST", "/admin/faults", {"kind": "maintenance", "seconds": 60})
    try:

        async def down() -> bool:
            return (await stack.bus.request("health.get", {}))["gateway_status"] != "connected"

        await eventually(down, 15)
        status, refused = await stack.send(text(f"new {uuid.uuid4()}"), new_key())
        assert (status, refused["errors"][0]["code"]) == (503, 1011)
        assert await stack.send(text(body), key) == (201, doc)
    finally:
        await stack.sandbox.admin("DELETE", "/admin/faults")
    assert [m["id"] for m in await stack.inbox(body)] == [doc["messages"][0]["id"]]


async def test_a_key_older_than_24_hours_no_longer_counts_and_gc_deletes_it(stack: Stack) -> None:
    key, body = new_key(), f"old {uuid.uuid4()}"
    status, doc = await stack.send(text(body), key)
    assert status == 201, doc
    digest = hashlib.sha256(key.encode()).hexdigest()

    async def age(hours: float) -> None:
        async with stack.core.db.engine.begin() as conn:
            await conn.execute(
                update(message_idempotency)
                .where(message_idempotency.c.key_sha256 == digest)
                .values(created_at=datetime.now(UTC) - timedelta(hours=hours))
            )

    async def key_rows() -> list[Any]:
        async with stack.core.db.engine.connect() as conn:
            return list(await conn.execute(select(message_idempotency)))

    await age(23.9)
    assert await stack.send(text(body), key) == (201, doc)  # still within the day
    await age(24.1)
    status, again = await stack.send(text(body), key)  # the same key starts a new request
    assert status == 201 and again["messages"][0]["id"] != doc["messages"][0]["id"], again
    (row,) = [r for r in await key_rows() if r.key_sha256 == digest]
    assert row.message_id == again["messages"][0]["id"]

    stale = new_key()
    assert (await stack.send(text(f"stale {uuid.uuid4()}"), stale))[0] == 201
    digest = hashlib.sha256(stale.encode()).hexdigest()
    await age(25)
    await stack.core.message_gc.run(None)
    assert {r.key_sha256 for r in await key_rows()} == {hashlib.sha256(key.encode()).hexdigest()}


@pytest.mark.parametrize("value", ["x" * 256, "tab\tinside", "caf\u00e9"], ids=["256 characters", "tab", "non-ASCII"])
async def test_a_malformed_key_is_400_1009(sqlite_backend: DbSettings, make_stack: StackFactory, value: str) -> None:
    stack = await make_stack(sqlite_backend)
    body = f"bad key {uuid.uuid4()}"
    for route in ("/v1/messages", "/v1/media"):
        status, error = await stack.call(
            "POST",
            route,
            json=text(body) if route == "/v1/messages" else None,
            data=None if route == "/v1/messages" else SAMPLES_BY_TYPE["image/png"](),
            headers={"Idempotency-Key": value} | ({} if route == "/v1/messages" else {"Content-Type": "image/png"}),
        )
        assert status == 400, (route, error)
        assert error["errors"][0]["code"] == 1009
        assert "Idempotency-Key" in error["errors"][0]["details"]
    assert await stored_with_body(stack, body) == 0


async def test_an_empty_or_repeated_key_is_400_1009(sqlite_backend: DbSettings, make_stack: StackFactory) -> None:
    stack = await make_stack(sqlite_backend)
    twice = CIMultiDict([("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    for headers in ({"Idempotency-Key": ""}, twice):
        status, error = await stack.call("POST", "/v1/messages", json=text("never"), headers=headers)
        assert (status, error["errors"][0]["code"]) == (400, 1009), error
    longest = "k" * 250 + " ~!#$"  # 255 printable ASCII characters, a space among them
    status, doc = await stack.send(text(f"long key {uuid.uuid4()}"), longest)
    assert status == 201, doc
    status, other = await stack.send(text(f"another {uuid.uuid4()}"), longest.upper())  # keys are case-sensitive
    assert status == 201 and other["messages"][0]["id"] != doc["messages"][0]["id"], other


# --- media -----------------------------------------------------------------------------------------------------


def media_files(stack: Stack) -> list[str]:
    return sorted(p.name for p in stack.settings.paths.media_dir.glob("*.json"))


async def test_the_same_upload_twice_is_one_media_id_even_after_a_webapp_restart(stack: Stack) -> None:
    png = SAMPLES_BY_TYPE["image/png"]() + uuid.uuid4().bytes
    key = new_key()
    first = await stack.upload(png, "image/png", key)
    assert first[0] == 201, first
    media_id = first[1]["media"][0]["id"]
    assert await stack.upload(png, "image/png", key) == first
    await stack.restart_web()
    assert await stack.upload(png, "image/png", key) == first
    racing = await asyncio.gather(*(stack.upload(png, "image/png", key) for _ in range(4)))
    assert all(answer == first for answer in racing), racing
    assert media_files(stack) == [f"{media_id}.json"]  # every repeated copy was deleted
    async with stack.core.db.engine.connect() as conn:  # webapp and coreapp share the install's database
        assert await conn.scalar(select(func.count()).select_from(media_keys)) == 1


async def test_the_same_upload_key_with_other_bytes_or_type_is_409_1004(stack: Stack) -> None:
    png = SAMPLES_BY_TYPE["image/png"]() + uuid.uuid4().bytes
    key = new_key()
    status, doc = await stack.upload(png, "image/png", key)
    assert status == 201, doc
    for data, content_type in ((png + b"x", "image/png"), (SAMPLES_BY_TYPE["image/jpeg"](), "image/jpeg")):
        status, error = await stack.upload(data, content_type, key)
        assert (status, error["errors"][0]["code"]) == (409, 1004), error
        assert "Idempotency-Key" in error["errors"][0]["details"]
    assert media_files(stack) == [f"{doc['media'][0]['id']}.json"]
    status, other = await stack.upload(png, "image/png", None)  # no key: a new upload each time
    assert status == 201 and other["media"][0]["id"] != doc["media"][0]["id"]


async def test_an_upload_key_older_than_24_hours_no_longer_counts_and_is_purged(stack: Stack) -> None:
    png = SAMPLES_BY_TYPE["image/png"]() + uuid.uuid4().bytes
    key, stale = new_key(), new_key()
    status, doc = await stack.upload(png, "image/png", key)
    assert status == 201, doc
    assert (await stack.upload(png + b"stale", "image/png", stale))[0] == 201

    async def age(hours: float) -> None:
        async with stack.core.db.engine.begin() as conn:
            await conn.execute(update(media_keys).values(created_at=datetime.now(UTC) - timedelta(hours=hours)))

    await age(24.1)
    status, again = await stack.upload(png, "image/png", key)  # the same key, a new upload
    assert status == 201 and again["media"][0]["id"] != doc["media"][0]["id"], again
    assert stack.web.storage is not None
    assert await stack.web.storage.purge_media_keys(datetime.now(UTC) - timedelta(hours=24)) == 1  # ``stale``
    async with stack.core.db.engine.connect() as conn:
        (row,) = list(await conn.execute(select(media_keys)))
    assert (row.key_sha256, row.media_id) == (key_digest(key), again["media"][0]["id"])


async def test_a_keyed_media_send_is_sent_once(stack: Stack) -> None:
    """Both steps of a media message retried with their keys: one file, one message on the phone."""
    png = SAMPLES_BY_TYPE["image/png"]() + uuid.uuid4().bytes
    upload_key, send_key, caption = new_key(), new_key(), f"caption {uuid.uuid4()}"
    media = [await stack.upload(png, "image/png", upload_key) for _ in range(2)]
    assert media[0] == media[1] and media[0][0] == 201
    image = {"to": PHONE, "type": "image", "image": {"id": media[0][1]["media"][0]["id"], "caption": caption}}
    sends = [await stack.send(image, send_key) for _ in range(2)]
    assert sends[0] == sends[1] and sends[0][0] == 201, sends
    message_id = sends[0][1]["messages"][0]["id"]

    async def on_phone() -> list[Any]:
        inbox = (await stack.sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return [m for m in inbox if (m.get("image") or {}).get("caption") == caption]

    await eventually(on_phone, 20)
    await asyncio.sleep(0.5)
    assert [m["id"] for m in await on_phone()] == [message_id]


# --- the bus contract ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idempotency", "field"),
    [
        ({"key": "x" * 256, "request_sha256": "0" * 64}, "$.idempotency.key"),
        ({"key": "caf\u00e9", "request_sha256": "0" * 64}, "$.idempotency.key"),
        ({"key": "k", "request_sha256": "not a digest"}, "$.idempotency.request_sha256"),
    ],
)
def test_coreapp_refuses_a_malformed_key_from_any_caller(idempotency: dict[str, str], field: str) -> None:
    """A caller that skipped webapp's header check still cannot store a key webapp would refuse (1009)."""
    raw = orjson.dumps({"to": PHONE, "text": {"body": "x"}, "idempotency": idempotency})
    with pytest.raises(ApiError) as info:
        contract.SEND.decode_request(raw)
    assert info.value.code is ErrorCode.INVALID_PARAMETER
    assert field in (info.value.details or "")
    keyed = {"to": PHONE, "idempotency": {"key": "k", "request_sha256": "0" * 64}}
    valid = contract.SEND.decode_request(orjson.dumps(keyed))
    assert isinstance(valid.idempotency, contract.Idempotency) and valid.idempotency.key == "k"
