"""coreapp operations over RPC: message GC on every backend, and stats after real traffic through chatd."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import MessageDirection, MessageStatus, NewMessage
from coreapp.storage.maintenance import GcCutoffs, MaintenanceStore
from coreapp.storage.tables import message_receipt_log, messages
from coreapp.storage.tables_webhooks import webhook_outbox
from coreapp.storage.webhooks import WebhookKind
from shared.config import DbSettings
from shared.ids import MessageId, WaId
from shared.message_types import MessageType
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register

NOW = datetime.now(UTC)

# id -> (direction, status, age in days); the comment says what GC must do with it.
ROWS: dict[str, tuple[MessageDirection, MessageStatus, int]] = {
    "out-read-old": (MessageDirection.OUT, MessageStatus.READ, 8),  # deleted
    "out-failed-old": (MessageDirection.OUT, MessageStatus.FAILED, 8),  # deleted
    "out-read-recent": (MessageDirection.OUT, MessageStatus.READ, 6),  # kept: not 7 days yet
    "out-delivered-old": (MessageDirection.OUT, MessageStatus.DELIVERED, 31),  # deleted
    "out-delivered-mid": (MessageDirection.OUT, MessageStatus.DELIVERED, 10),  # kept
    "out-accepted-old": (MessageDirection.OUT, MessageStatus.ACCEPTED, 90),  # kept: still to be sent
    "out-sent-old": (MessageDirection.OUT, MessageStatus.SENT, 90),  # kept: may still be delivered
    "in-old": (MessageDirection.IN, MessageStatus.RECEIVED, 31),  # deleted
    "in-undecryptable-old": (MessageDirection.IN, MessageStatus.UNDECRYPTABLE, 31),  # deleted
    "in-recent": (MessageDirection.IN, MessageStatus.RECEIVED, 1),  # kept
}
GARBAGE = {"out-read-old", "out-failed-old", "out-delivered-old", "in-old", "in-undecryptable-old"}


async def _seed(core: Core) -> None:
    store = core.app.stores

    async def seed_txn(conn: AsyncConnection) -> None:
        rows = [
            NewMessage(MessageId(mid), direction, WaId(PHONE), MessageType.TEXT, '{"type":"text"}', status, 0)
            for mid, (direction, status, _) in ROWS.items()
        ]
        await store.messages.insert_many_txn(conn, rows)
        for mid, (_, _, age_days) in ROWS.items():
            when = NOW - timedelta(days=age_days)
            await conn.execute(update(messages).where(messages.c.id == mid).values(created_at=when, updated_at=when))
            await store.messages.log_receipt_txn(conn, MessageId(mid), 0, MessageStatus.DELIVERED, 0)
        await store.webhooks.enqueue_txn(conn, WebhookKind.STATUS_CHANGE, {"statuses": [{"id": "out-read-old"}]})

    await core.app.db.run("test.seed", seed_txn)


async def _ids(core: Core, stmt: Any) -> set[str]:
    async with core.app.db.engine.connect() as conn:
        return {row[0] for row in await conn.execute(stmt)}


async def test_gc_deletes_final_messages_and_their_receipts_only(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await make_core(backend)
    await _seed(core)

    assert await core.rpc("messages.gc") == {"deleted": len(GARBAGE), "complete": True}

    kept = set(ROWS) - GARBAGE
    assert await _ids(core, select(messages.c.id)) == kept
    assert await _ids(core, select(message_receipt_log.c.message_id)) == kept
    assert len(await _ids(core, select(webhook_outbox.c.event_id))) == 1  # the outbox is never touched
    assert await core.rpc("messages.gc") == {"deleted": 0, "complete": True}


async def test_gc_batches(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await make_core(backend)
    await _seed(core)
    store = MaintenanceStore(core.app.db)
    cutoffs = GcCutoffs(NOW - timedelta(days=7), NOW - timedelta(days=30), NOW - timedelta(days=30))
    batches = []
    while batch := await store.gc_batch(cutoffs, limit=2):
        batches.append(batch)
    assert batches == [2, 2, 1]
    assert await store.table_counts() == {
        "messages": 5,
        "message_receipt_log": 5,
        "webhook_outbox": 1,
        "webhook_dead": 0,
    }


def _value(section: dict[str, Any], name: str, **labels: str) -> float:
    (value,) = [s["value"] for s in section[name]["data"] if all(s["labels"].get(k) == v for k, v in labels.items())]
    return float(value)


async def test_stats_count_real_traffic(sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(sqlite_db)
    before = (await core.rpc("stats.app"))["metrics"]
    assert _value(before, "gateway_status", status="unregistered") == 1
    await register(core, sandbox)

    await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": "hello"}})
    await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "hi"}}
    )

    async def counted() -> dict[str, Any] | None:
        stats = (await core.rpc("stats.app"))["metrics"]
        done = (
            _value(stats, "messages_sent_total", result="sent") == 1
            and _value(stats, "messages_received_total") == 1
            and _value(stats, "message_receipts_total", status="delivered") == 1
            and _value(stats, "message_receipts_total", status="read") == 1
        )
        return stats if done else None

    stats = await eventually(counted)
    assert _value(stats, "gateway_status", status="connected") == 1
    assert _value(stats, "decrypt_failures_total") == 0
    assert _value(stats, "chat_reconnects_total") == 0
    assert _value(stats, "message_receipts_total", status="failed") == 0
    assert _value(stats, "node_role", role="primary_master") == 1
    assert stats["callback_queue_size"]["type"] == "gauge"

    text = (await core.rpc("stats.app", {"format": "prometheus"}))["text"]
    assert 'messages_sent_total{result="sent"} 1.0' in text

    db = (await core.rpc("stats.db"))["metrics"]
    stored = {
        d: sum(s["value"] for s in db["db_messages"]["data"] if s["labels"]["direction"] == d) for d in ("in", "out")
    }
    assert stored == {"in": 1, "out": 1}
    assert _value(db, "db_request_duration_us_count", request="inbound.receive") == 1
    assert _value(db, "db_table_rows", table="messages") == 2

    support = await core.rpc("support.get")
    assert support["gateway_status"] == "connected" and support["registered"] is True
    assert support["counts"]["messages"] == 2
