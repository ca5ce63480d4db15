"""The webhook outbox: webhook bodies written in the same transaction as the state change that causes them.

A row is only ever deleted after the receiver answered HTTP 200, so a crash at any point loses nothing (the
receiver may see an event twice and drops it by ``event_id``).  Rows are delivered strictly by ``seq``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables_webhooks import webhook_outbox
from shared.db.engine import Database
from shared.ids import EventId, new_event_id

LAST_ERROR_MAX = 255
"""Width of ``webhook_outbox.last_error``; longer messages are cut rather than failing the update."""
DELETE_CHUNK = 500
"""Rows per ``DELETE … WHERE seq IN (…)`` statement."""


class WebhookKind(enum.StrEnum):
    """What caused a webhook; also the ``type`` label of the callback metrics (reference §2.11)."""

    INBOUND_MESSAGE = "inbound_message"
    STATUS_CHANGE = "status_change"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One pending webhook; ``body`` is the JSON text exactly as it will be POSTed (stable across retries)."""

    seq: int
    event_id: EventId
    kind: str
    body: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None


class WebhookStore:
    """SQL for ``webhook_outbox``; the only module that touches that table."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        # ``clock`` returns epoch seconds; the dispatcher uses the same one to decide what is due.
        self._db = db
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def enqueue_txn(self, conn: AsyncConnection, kind: str, body: dict[str, Any]) -> EventId:
        """Queue ``body`` inside the caller's open transaction and return its event id.

        The caller commits the state change and this row together, then calls ``WebhookDispatcher.notify()``.
        """
        kind = WebhookKind(kind).value  # refuse unknown kinds before they reach the DB
        event_id = new_event_id()
        now = self._now()
        await conn.execute(
            insert(webhook_outbox).values(
                event_id=event_id,
                kind=kind,
                body=orjson.dumps(body).decode(),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                last_error=None,
            )
        )
        return event_id

    async def head(self, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` rows, in delivery order."""

        async def fn(conn: AsyncConnection) -> list[OutboxRow]:
            result = await conn.execute(select(webhook_outbox).order_by(webhook_outbox.c.seq).limit(limit))
            return [
                OutboxRow(
                    seq=int(row.seq),
                    event_id=EventId(row.event_id),
                    kind=row.kind,
                    body=row.body,
                    attempts=int(row.attempts),
                    next_attempt_at=row.next_attempt_at,
                    created_at=row.created_at,
                    last_error=row.last_error,
                )
                for row in result
            ]

        return await self._db.run("webhooks.head", fn)

    async def delete(self, seq: int) -> None:
        """Forget a delivered row (after the receiver's HTTP 200)."""

        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(delete(webhook_outbox).where(webhook_outbox.c.seq == seq))

        await self._db.run("webhooks.delete", fn)

    async def delete_many(self, seqs: Sequence[int]) -> None:
        """Forget several delivered rows in one transaction (each after its receiver's HTTP 200)."""
        if not seqs:
            return

        async def fn(conn: AsyncConnection) -> None:
            ordered = sorted(seqs)
            for start in range(0, len(ordered), DELETE_CHUNK):
                chunk = ordered[start : start + DELETE_CHUNK]
                await conn.execute(delete(webhook_outbox).where(webhook_outbox.c.seq.in_(chunk)))

        await self._db.run("webhooks.delete_many", fn)

    async def defer(self, seq: int, attempts: int, next_attempt_at: datetime, error: str) -> None:
        """Record a failed attempt and when to try again."""

        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(
                update(webhook_outbox)
                .where(webhook_outbox.c.seq == seq)
                .values(attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:LAST_ERROR_MAX])
            )

        await self._db.run("webhooks.defer", fn)

    async def count(self) -> int:
        """Rows waiting for delivery (``callback_queue_size``)."""

        async def fn(conn: AsyncConnection) -> int:
            return int(await conn.scalar(select(func.count()).select_from(webhook_outbox)) or 0)

        return await self._db.run("webhooks.count", fn)
