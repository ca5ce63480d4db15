"""SQL for operations: message garbage collection and the row counts behind ``/v1/stats/db`` and ``/v1/support``.

GC deletes messages in a final state together with their ``message_receipt_log`` rows, one bounded batch per
transaction so it never holds locks for long.  It never touches ``webhook_outbox``: a queued webhook carries
its own body, so deleting the message it reports on cannot lose or change a delivery.  Idempotency keys past
their 24 hours go in batches of their own (``gc_keys_batch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import MessageDirection, MessageStatus
from coreapp.storage.tables import message_receipt_log, messages
from coreapp.storage.tables_idempotency import message_idempotency
from coreapp.storage.tables_webhooks import webhook_dead, webhook_outbox
from shared.db.engine import Database

COUNTED_TABLES = {
    "messages": messages,
    "message_receipt_log": message_receipt_log,
    "webhook_outbox": webhook_outbox,
    "webhook_dead": webhook_dead,
}


@dataclass(frozen=True, slots=True)
class GcCutoffs:
    """Rows last changed before these instants are garbage (see ``coreapp.maintenance.gc.GcPolicy`` for the why)."""

    outbound_final: datetime  # read / failed
    outbound_delivered: datetime  # delivered but never read (the recipient may have read receipts off)
    inbound: datetime


class MaintenanceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def gc_batch(self, cutoffs: GcCutoffs, limit: int) -> int:
        """Delete up to ``limit`` garbage messages (oldest first) and their receipt rows; how many went."""

        async def gc_txn(conn: AsyncConnection) -> int:
            out, inbound = MessageDirection.OUT.value, MessageDirection.IN.value
            final = (MessageStatus.READ.value, MessageStatus.FAILED.value)
            garbage = or_(
                and_(
                    messages.c.direction == out,
                    messages.c.status.in_(final),
                    messages.c.updated_at < cutoffs.outbound_final,
                ),
                and_(
                    messages.c.direction == out,
                    messages.c.status == MessageStatus.DELIVERED.value,
                    messages.c.updated_at < cutoffs.outbound_delivered,
                ),
                and_(messages.c.direction == inbound, messages.c.created_at < cutoffs.inbound),
            )
            rows = (
                await conn.execute(
                    select(messages.c.seq, messages.c.id).where(garbage).order_by(messages.c.seq).limit(limit)
                )
            ).all()
            if not rows:
                return 0
            ids = [row.id for row in rows]
            await conn.execute(delete(message_receipt_log).where(message_receipt_log.c.message_id.in_(ids)))
            await conn.execute(delete(messages).where(messages.c.seq.in_([row.seq for row in rows])))
            return len(rows)

        return await self._db.run("messages.gc", gc_txn)

    async def gc_keys_batch(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` idempotency keys stored before ``before``; how many went."""

        async def gc_keys_txn(conn: AsyncConnection) -> int:
            keys = (
                await conn.scalars(
                    select(message_idempotency.c.key_sha256)
                    .where(message_idempotency.c.created_at < before)
                    .order_by(message_idempotency.c.created_at)
                    .limit(limit)
                )
            ).all()
            if keys:
                await conn.execute(delete(message_idempotency).where(message_idempotency.c.key_sha256.in_(keys)))
            return len(keys)

        return await self._db.run("messages.gc_keys", gc_keys_txn)

    async def table_counts(self) -> dict[str, int]:
        """Rows per table (``messages``, ``message_receipt_log``, ``webhook_outbox``, ``webhook_dead``)."""

        async def fn(conn: AsyncConnection) -> dict[str, int]:
            return {
                name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
                for name, table in COUNTED_TABLES.items()
            }

        return await self._db.run("stats.table_counts", fn)

    async def message_counts(self) -> dict[tuple[str, str], int]:
        """Stored messages per ``(direction, status)``."""

        async def fn(conn: AsyncConnection) -> dict[tuple[str, str], int]:
            result = await conn.execute(
                select(messages.c.direction, messages.c.status, func.count()).group_by(
                    messages.c.direction, messages.c.status
                )
            )
            return {(str(row[0]), str(row[1])): int(row[2]) for row in result}

        return await self._db.run("stats.message_counts", fn)
