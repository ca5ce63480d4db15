"""The outbox table: rows ride the caller's transaction, come back in order, and are deferred or deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.webhooks import WebhookKind, WebhookStore
from shared.db.engine import Database
from tests.coreapp_webhooks.conftest import enqueue


async def test_enqueue_rolls_back_with_the_caller(db: Database, store: WebhookStore) -> None:
    class Boom(Exception):
        pass

    async def fn(conn: AsyncConnection) -> None:
        await store.enqueue_txn(conn, WebhookKind.INBOUND_MESSAGE, {"messages": []})
        raise Boom

    with pytest.raises(Boom):
        await db.run("test.rollback", fn)
    assert await store.count() == 0


async def test_head_in_order_defer_delete(db: Database, store: WebhookStore) -> None:
    ids = [await enqueue(db, store, n) for n in range(5)]
    assert len(set(ids)) == 5
    rows = await store.head(3)
    assert [r.event_id for r in rows] == ids[:3]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert rows[0].attempts == 0 and rows[0].last_error is None
    assert rows[0].next_attempt_at.tzinfo is not None
    assert rows[0].body == '{"n":0}'
    assert await store.count() == 5

    later = datetime.now(UTC).replace(microsecond=123456) + timedelta(seconds=30)
    await store.defer(rows[0].seq, 2, later, "x" * 1000)
    head = (await store.head(1))[0]
    assert head.attempts == 2
    assert head.next_attempt_at == later
    assert head.last_error == "x" * 255

    await store.delete(rows[0].seq)
    assert [r.event_id for r in await store.head(10)] == ids[1:]
    assert await store.count() == 4


async def test_unknown_kind_refused(db: Database, store: WebhookStore) -> None:
    with pytest.raises(ValueError):
        await db.run("test.kind", lambda conn: store.enqueue_txn(conn, "gossip", {}))
