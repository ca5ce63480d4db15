"""SQL for ``messages`` (inbox and outbox) and ``message_receipt_log``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import case, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import MessageDirection, MessageState, MessageStatus, NewMessage, OutboundMessage
from coreapp.storage.tables import message_receipt_log, messages
from shared.db.engine import Database
from shared.ids import MessageId, WaId
from shared.shards import SHARD_SPACE, ShardSlot, shard_of

_ENVELOPES_CHUNK = 100
"""Messages per ``set_envelopes_many_txn`` statement (2 bound parameters each)."""
_IDS_CHUNK = 500
"""Ids per ``IN (…)`` list of the grouped status statements."""


def _chunks(items: Sequence[MessageId], size: int = _IDS_CHUNK) -> list[Sequence[MessageId]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


ReceiptKey = tuple[MessageId, int, MessageStatus]
"""(message, device, status): one row of ``message_receipt_log``."""


class MessageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert_many_txn(self, conn: AsyncConnection, rows: Sequence[NewMessage]) -> None:
        """Insert several messages in the caller's transaction (one statement)."""
        if not rows:
            return
        now = datetime.now(UTC)
        await conn.execute(
            insert(messages),
            [
                {
                    "id": r.id,
                    "direction": r.direction.value,
                    "peer": r.peer,
                    "type": r.type.value,
                    "content": r.content,
                    "status": r.status.value,
                    "timestamp": r.timestamp,
                    "envelopes": None,
                    "error_code": r.error_code,
                    "error_title": r.error_title,
                    "created_at": now,
                    "updated_at": now,
                    "shard32": shard_of(r.peer, SHARD_SPACE) if r.direction is MessageDirection.OUT else None,
                }
                for r in rows
            ],
        )

    async def exists(self, message_id: MessageId) -> bool:
        return await self._db.run("messages.exists", lambda conn: self.exists_txn(conn, message_id))

    async def exists_txn(self, conn: AsyncConnection, message_id: MessageId) -> bool:
        return (await conn.scalar(select(messages.c.seq).where(messages.c.id == message_id))) is not None

    async def pending_outbound(
        self, after_seq: int, limit: int, shard: ShardSlot | None = None
    ) -> list[OutboundMessage]:
        """Accepted outbound messages (not yet acked by the network) after ``after_seq``, oldest first; with
        ``shard``, only those to that shard's peers."""

        async def fn(conn: AsyncConnection) -> list[OutboundMessage]:
            rows = await conn.execute(
                select(
                    messages.c.seq,
                    messages.c.id,
                    messages.c.peer,
                    messages.c.content,
                    messages.c.timestamp,
                    messages.c.envelopes,
                )
                .where(
                    messages.c.direction == MessageDirection.OUT.value,
                    messages.c.status == MessageStatus.ACCEPTED.value,
                    messages.c.seq > after_seq,
                    *([] if shard is None else [messages.c.shard32 % shard.shards == shard.shard]),
                )
                .order_by(messages.c.seq)
                .limit(limit)
            )
            return [
                OutboundMessage(
                    seq=int(r.seq),
                    id=MessageId(r.id),
                    peer=WaId(r.peer),
                    content=r.content or "",
                    timestamp=int(r.timestamp),
                    envelopes=bytes(r.envelopes) if r.envelopes is not None else None,
                )
                for r in rows
            ]

        return await self._db.run("messages.pending_outbound", fn)

    async def set_envelopes_txn(self, conn: AsyncConnection, message_id: MessageId, envelopes: bytes) -> None:
        await conn.execute(
            update(messages)
            .where(messages.c.id == message_id)
            .values(envelopes=envelopes, updated_at=datetime.now(UTC))
        )

    async def set_envelopes_many_txn(self, conn: AsyncConnection, envelopes: Mapping[MessageId, bytes]) -> None:
        """``set_envelopes_txn`` for many messages: one ``UPDATE … CASE id …`` per chunk, not one per message."""
        items = sorted(envelopes.items())
        now = datetime.now(UTC)
        for start in range(0, len(items), _ENVELOPES_CHUNK):
            chunk = items[start : start + _ENVELOPES_CHUNK]
            value = case(
                {message_id: literal(data, messages.c.envelopes.type) for message_id, data in chunk},
                value=messages.c.id,
            )
            await conn.execute(
                update(messages)
                .where(messages.c.id.in_([message_id for message_id, _ in chunk]))
                .values(envelopes=value, updated_at=now)
            )

    async def get_state_txn(self, conn: AsyncConnection, message_id: MessageId) -> MessageState | None:
        """The message's direction, peer and status, locked for update."""
        row = (
            await conn.execute(
                select(messages.c.id, messages.c.direction, messages.c.peer, messages.c.status)
                .where(messages.c.id == message_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        return MessageState(
            id=MessageId(row.id),
            direction=MessageDirection(row.direction),
            peer=WaId(row.peer),
            status=MessageStatus(row.status),
        )

    async def get_states_txn(
        self, conn: AsyncConnection, message_ids: Sequence[MessageId]
    ) -> dict[MessageId, MessageState]:
        """``get_state_txn`` for many messages at once (locked for update, in id order so lockers cannot deadlock)."""
        found: dict[MessageId, MessageState] = {}
        for chunk in _chunks(sorted(set(message_ids))):
            rows = await conn.execute(
                select(messages.c.id, messages.c.direction, messages.c.peer, messages.c.status)
                .where(messages.c.id.in_(chunk))
                .order_by(messages.c.id)
                .with_for_update()
            )
            for row in rows:
                found[MessageId(row.id)] = MessageState(
                    id=MessageId(row.id),
                    direction=MessageDirection(row.direction),
                    peer=WaId(row.peer),
                    status=MessageStatus(row.status),
                )
        return found

    async def set_statuses_txn(
        self, conn: AsyncConnection, changes: Mapping[MessageId, tuple[MessageStatus, int | None, str | None]]
    ) -> None:
        """``set_status_txn`` for many messages: one ``UPDATE`` per distinct (status, error) among them."""
        groups: dict[tuple[MessageStatus, int | None, str | None], list[MessageId]] = {}
        for message_id, change in changes.items():
            groups.setdefault(change, []).append(message_id)
        now = datetime.now(UTC)
        for (status, error_code, error_title), ids in groups.items():
            values: dict[str, object] = {"status": status.value, "updated_at": now}
            if error_code is not None:
                values["error_code"] = error_code
                values["error_title"] = (error_title or "")[:255]
            for chunk in _chunks(ids):
                await conn.execute(update(messages).where(messages.c.id.in_(chunk)).values(**values))

    async def forget_content_many_txn(self, conn: AsyncConnection, message_ids: Sequence[MessageId]) -> None:
        """Drop the content and envelopes of these messages (``pass_through``), keeping id, peer and status."""
        for chunk in _chunks(list(dict.fromkeys(message_ids))):
            await conn.execute(update(messages).where(messages.c.id.in_(chunk)).values(content=None, envelopes=None))

    async def set_status_txn(
        self,
        conn: AsyncConnection,
        message_id: MessageId,
        status: MessageStatus,
        error_code: int | None = None,
        error_title: str | None = None,
    ) -> None:
        values: dict[str, object] = {"status": status.value, "updated_at": datetime.now(UTC)}
        if error_code is not None:
            values["error_code"] = error_code
            values["error_title"] = (error_title or "")[:255]
        await conn.execute(update(messages).where(messages.c.id == message_id).values(**values))

    async def log_receipt_txn(
        self, conn: AsyncConnection, message_id: MessageId, device_id: int, status: MessageStatus, timestamp: int
    ) -> bool:
        """Record a receipt; ``False`` when this (message, device, status) was already recorded."""
        seen = await conn.scalar(
            select(message_receipt_log.c.timestamp).where(
                message_receipt_log.c.message_id == message_id,
                message_receipt_log.c.device_id == device_id,
                message_receipt_log.c.status == status.value,
            )
        )
        if seen is not None:
            return False
        await conn.execute(
            insert(message_receipt_log).values(
                message_id=message_id, device_id=device_id, status=status.value, timestamp=timestamp
            )
        )
        return True

    async def log_receipts_txn(self, conn: AsyncConnection, receipts: Sequence[tuple[ReceiptKey, int]]) -> list[bool]:
        """Record many ``(key, timestamp)`` receipts; per receipt, whether it is new (not logged before, nor earlier
        in ``receipts``).  One ``SELECT`` for what is known and one multi-row ``INSERT`` for the rest."""
        if not receipts:
            return []
        ids = list(dict.fromkeys(key[0] for key, _ in receipts))
        known: set[tuple[str, int, str]] = set()
        for chunk in _chunks(ids):
            rows = await conn.execute(
                select(
                    message_receipt_log.c.message_id, message_receipt_log.c.device_id, message_receipt_log.c.status
                ).where(message_receipt_log.c.message_id.in_(chunk))
            )
            known.update((r.message_id, r.device_id, r.status) for r in rows)
        fresh: list[bool] = []
        new_rows: list[dict[str, object]] = []
        for (message_id, device_id, status), timestamp in receipts:
            key = (message_id, device_id, status.value)
            fresh.append(key not in known)
            if key not in known:
                known.add(key)
                new_rows.append(
                    {"message_id": message_id, "device_id": device_id, "status": status.value, "timestamp": timestamp}
                )
        if new_rows:
            await conn.execute(insert(message_receipt_log), new_rows)
        return fresh

    async def has_receipt_txn(self, conn: AsyncConnection, message_id: MessageId, status: MessageStatus) -> bool:
        """Whether any device reported ``status`` for the message."""
        found = await conn.scalar(
            select(message_receipt_log.c.device_id)
            .where(message_receipt_log.c.message_id == message_id, message_receipt_log.c.status == status.value)
            .limit(1)
        )
        return found is not None
