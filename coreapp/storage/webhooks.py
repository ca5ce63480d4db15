"""The webhook outbox: webhook bodies written in the same transaction as the state change that causes them.

A row is only ever deleted after the receiver answered HTTP 200, so a crash at any point loses nothing (the
receiver may see an event twice and drops it by ``event_id``).  Rows of one ``partition_key`` (the peer's wa_id,
see ``partition_of``) are delivered strictly by ``seq``; the dispatcher may interleave partitions.

``webhook_dead`` holds the events the dispatcher gave up on (too old, or too many failed attempts): moved there in
one transaction (``dead_letter``), so an event is always in exactly one of the two tables until a 200 or its
retention ends (``collect_dead``); ``replay_dead`` queues it again under a new ``seq`` with the same event id.

``webhook_log`` is the delivery log: one row per attempt, dead-lettering or replay, bounded by ``trim_log``.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables_webhooks import webhook_dead, webhook_log, webhook_outbox
from shared.bus.contract.ops import DeadReason, DeadWebhook, WebhookLogEntry
from shared.db.engine import Database
from shared.ids import EventId, new_event_id

LAST_ERROR_MAX = 255
"""Width of ``webhook_outbox.last_error``; longer messages are cut rather than failing the update."""
DELETE_CHUNK = 500
"""Rows per ``DELETE … WHERE seq IN (…)`` statement."""
PARTITION_MAX = 64
"""Width of ``webhook_outbox.partition_key``."""


def partition_of(body: Mapping[str, Any]) -> str:
    """The ordering key of a webhook body: the wa_id of the user it is about.

    A status names its ``recipient_id``, an inbound message its ``from``; so an inbound message and the statuses of
    the replies it caused share a partition, and so do all statuses of one message.  An ``errors`` callback is
    about no one: partition ``""``.
    """
    for key, field in (("statuses", "recipient_id"), ("messages", "from")):
        entries = body.get(key)
        if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
            value = entries[0].get(field)
            if isinstance(value, str) and value:
                return value[:PARTITION_MAX]
    return ""


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
    kind: WebhookKind
    body: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None
    partition: str = ""


@dataclass(frozen=True, slots=True)
class ReplayedRow:
    """A dead event queued again: its new outbox ``seq``."""

    event_id: EventId
    seq: int
    kind: WebhookKind


class WebhookStore:
    """SQL for ``webhook_outbox``; the only module that touches that table."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        # ``clock`` returns epoch seconds; the dispatcher uses the same one to decide what is due.
        self._db = db
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def enqueue_txn(
        self, conn: AsyncConnection, kind: WebhookKind, body: dict[str, Any], partition: str | None = None
    ) -> EventId:
        """Queue ``body`` inside the caller's open transaction and return its event id.

        ``partition`` is the ordering key (default: ``partition_of(body)``).

        The caller commits the state change and this row together, then calls ``WebhookDispatcher.notify()``.
        """
        return (await self._enqueue_txn(conn, kind, [body], partition))[0]

    async def enqueue_many_txn(
        self, conn: AsyncConnection, kind: WebhookKind, bodies: Sequence[dict[str, Any]]
    ) -> list[EventId]:
        """``enqueue_txn`` for many bodies in one multi-row ``INSERT``; their ``seq`` follows the order given."""
        return await self._enqueue_txn(conn, kind, bodies, None)

    async def _enqueue_txn(
        self, conn: AsyncConnection, kind: WebhookKind, bodies: Sequence[dict[str, Any]], partition: str | None
    ) -> list[EventId]:
        if not isinstance(kind, WebhookKind):  # an untyped caller's string never reaches the DB
            raise ValueError(f"not a WebhookKind: {kind!r}")
        now = self._now()
        event_ids = [new_event_id() for _ in bodies]
        rows = [
            {
                "event_id": event_id,
                "kind": kind.value,
                "body": orjson.dumps(body).decode(),
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "last_error": None,
                "partition_key": (partition_of(body) if partition is None else partition)[:PARTITION_MAX],
            }
            for event_id, body in zip(event_ids, bodies, strict=True)
        ]
        if len(rows) == 1:
            await conn.execute(insert(webhook_outbox).values(**rows[0]))
        elif rows:
            await conn.execute(insert(webhook_outbox), rows)
        return event_ids

    async def head(self, limit: int, also: Sequence[int] = ()) -> list[OutboxRow]:
        """The oldest ``limit`` rows, plus the rows ``also`` names wherever they are, in delivery order."""

        async def fn(conn: AsyncConnection) -> list[OutboxRow]:
            query = select(webhook_outbox).order_by(webhook_outbox.c.seq).limit(limit)
            found = list(await conn.execute(query))
            if also:
                seen = {int(r.seq) for r in found}
                wanted = sorted(set(also) - seen)[:DELETE_CHUNK]
                if wanted:
                    found += list(await conn.execute(select(webhook_outbox).where(webhook_outbox.c.seq.in_(wanted))))
                    found.sort(key=lambda r: int(r.seq))
            return [
                OutboxRow(
                    seq=int(row.seq),
                    event_id=EventId(row.event_id),
                    kind=WebhookKind(row.kind),
                    body=row.body,
                    attempts=int(row.attempts),
                    next_attempt_at=row.next_attempt_at,
                    created_at=row.created_at,
                    last_error=row.last_error,
                    partition=row.partition_key or "",
                )
                for row in found
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

        # Unfenced: a count of the shared outbox for any node's stats (multiconnect: standbys report it too).
        return await self._db.run("webhooks.count", fn, fenced=False)

    async def oldest_pending(self, skip: Collection[int] = ()) -> datetime | None:
        """When the oldest row waiting for delivery was queued (rows in ``skip``, delivered already, left out)."""

        async def fn(conn: AsyncConnection) -> datetime | None:
            query = (
                select(webhook_outbox.c.seq, webhook_outbox.c.created_at)
                .order_by(webhook_outbox.c.created_at, webhook_outbox.c.seq)
                .limit(len(skip) + 1)
            )
            for row in await conn.execute(query):
                if int(row.seq) not in skip:
                    created: datetime = row.created_at
                    return created
            return None

        return await self._db.run("webhooks.oldest_pending", fn, fenced=False)  # stats, as count

    # --- the dead-letter list -------------------------------------------------------------------------------

    async def dead_letter(self, row: OutboxRow, attempts: int, error: str, reason: DeadReason) -> bool:
        """Move ``row`` from the outbox to ``webhook_dead`` (one transaction); ``False`` if it was no longer queued."""
        now = self._now()

        async def fn(conn: AsyncConnection) -> bool:
            gone = await conn.execute(delete(webhook_outbox).where(webhook_outbox.c.seq == row.seq))
            if not gone.rowcount:
                return False
            await conn.execute(
                insert(webhook_dead).values(
                    event_id=row.event_id,
                    seq=row.seq,
                    kind=row.kind.value,
                    body=row.body,
                    partition_key=row.partition[:PARTITION_MAX],
                    attempts=attempts,
                    last_error=error[:LAST_ERROR_MAX],
                    reason=reason,
                    created_at=row.created_at,
                    dead_at=now,
                )
            )
            return True

        return await self._db.run("webhooks.dead_letter", fn)

    async def list_dead(self, limit: int) -> tuple[list[DeadWebhook], int]:
        """The newest ``limit`` dead-lettered events, newest first, and how many there are."""

        async def fn(conn: AsyncConnection) -> tuple[list[DeadWebhook], int]:
            total = int(await conn.scalar(select(func.count()).select_from(webhook_dead)) or 0)
            result = await conn.execute(select(webhook_dead).order_by(webhook_dead.c.id.desc()).limit(limit))
            dead = [
                DeadWebhook(
                    event_id=r.event_id,
                    seq=int(r.seq),
                    kind=r.kind,
                    attempts=int(r.attempts),
                    reason=r.reason,
                    last_error=r.last_error,
                    created_at=r.created_at,
                    dead_at=r.dead_at,
                )
                for r in result
            ]
            return dead, total

        return await self._db.run("webhooks.list_dead", fn)

    async def replay_dead(self, event_id: str | None, limit: int) -> tuple[list[ReplayedRow], int]:
        """Queue ``event_id`` (or the oldest ``limit`` dead events) again, at the end of the outbox and with
        ``attempts`` 0; what was queued and how many dead events remain.  ``DELETE_CHUNK`` per transaction.

        A new ``seq`` rather than the old one: SQLite (no ``AUTOINCREMENT``), MySQL 5.7 and older MariaDB hand out
        the largest ``seq`` present + 1 again, so an old ``seq`` may since belong to another row.
        """
        replayed: list[ReplayedRow] = []

        async def chunk(conn: AsyncConnection, size: int) -> int:
            query = select(webhook_dead).order_by(webhook_dead.c.id).limit(size).with_for_update()
            if event_id is not None:
                query = query.where(webhook_dead.c.event_id == event_id)
            rows = list(await conn.execute(query))
            if rows:
                now = self._now()
                values = [
                    {
                        "event_id": r.event_id,
                        "kind": r.kind,
                        "body": r.body,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,  # its age limit counts again from the replay
                        "last_error": None,
                        "partition_key": r.partition_key or "",
                    }
                    for r in rows
                ]
                await conn.execute(insert(webhook_outbox), values)
                await conn.execute(delete(webhook_dead).where(webhook_dead.c.id.in_([int(r.id) for r in rows])))
                ids = [r.event_id for r in rows]
                queued = await conn.execute(
                    select(webhook_outbox.c.seq, webhook_outbox.c.event_id, webhook_outbox.c.kind)
                    .where(webhook_outbox.c.event_id.in_(ids))
                    .order_by(webhook_outbox.c.seq)
                )
                replayed.extend(ReplayedRow(EventId(q.event_id), int(q.seq), WebhookKind(q.kind)) for q in queued)
            return len(rows)

        while len(replayed) < limit:
            size = min(DELETE_CHUNK, limit - len(replayed))
            moved = await self._db.run("webhooks.replay_dead", functools.partial(chunk, size=size))
            if moved < size or event_id is not None:
                break

        async def remaining(conn: AsyncConnection) -> int:
            return int(await conn.scalar(select(func.count()).select_from(webhook_dead)) or 0)

        return replayed, await self._db.run("webhooks.dead_count", remaining)

    async def dead_count(self) -> int:
        """Events in the dead-letter list (``callback_dead_letters``)."""

        async def fn(conn: AsyncConnection) -> int:
            return int(await conn.scalar(select(func.count()).select_from(webhook_dead)) or 0)

        return await self._db.run("webhooks.dead_count", fn, fenced=False)  # stats, as count

    async def collect_dead(self, older_than: datetime) -> int:
        """Delete dead events given up on before ``older_than`` (``DELETE_CHUNK`` per transaction); how many went."""

        async def fn(conn: AsyncConnection) -> int:
            ids = list(
                await conn.scalars(
                    select(webhook_dead.c.id)
                    .where(webhook_dead.c.dead_at < older_than)
                    .order_by(webhook_dead.c.id)
                    .limit(DELETE_CHUNK)
                )
            )
            if ids:
                await conn.execute(delete(webhook_dead).where(webhook_dead.c.id.in_(ids)))
            return len(ids)

        total = 0
        while True:
            deleted = await self._db.run("webhooks.collect_dead", fn)
            total += deleted
            if deleted < DELETE_CHUNK:
                return total

    # --- the delivery log -----------------------------------------------------------------------------------

    async def add_log(self, entries: Sequence[WebhookLogEntry]) -> None:
        """Append attempts to ``webhook_log`` (one transaction)."""
        if not entries:
            return
        rows = [
            {
                "event_id": e.event_id,
                "seq": e.seq,
                "kind": e.kind,
                "host": e.host[:255],
                "attempt": e.attempt,
                "status": e.status,
                "error": None if e.error is None else e.error[:LAST_ERROR_MAX],
                "latency_ms": e.latency_ms,
                "at": e.at,
                "action": e.action,
            }
            for e in entries
        ]

        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(insert(webhook_log), rows)

        await self._db.run("webhooks.add_log", fn)

    async def read_log(self, limit: int) -> list[WebhookLogEntry]:
        """The newest ``limit`` attempts, newest first."""

        async def fn(conn: AsyncConnection) -> list[WebhookLogEntry]:
            result = await conn.execute(select(webhook_log).order_by(webhook_log.c.id.desc()).limit(limit))
            return [
                WebhookLogEntry(
                    event_id=r.event_id,
                    seq=int(r.seq),
                    kind=r.kind,
                    host=r.host,
                    attempt=int(r.attempt),
                    status=None if r.status is None else int(r.status),
                    error=r.error,
                    latency_ms=round(float(r.latency_ms), 1),
                    at=r.at,
                    action=r.action,
                )
                for r in result
            ]

        return await self._db.run("webhooks.read_log", fn)

    async def trim_log(self, keep_rows: int, older_than: datetime) -> int:
        """Forget attempts beyond the newest ``keep_rows`` and those before ``older_than``; how many went."""

        async def fn(conn: AsyncConnection) -> int:
            newest = await conn.scalar(select(func.max(webhook_log.c.id)))
            cond = webhook_log.c.at < older_than
            if newest is not None:
                cond = or_(cond, webhook_log.c.id <= int(newest) - keep_rows)
            result = await conn.execute(delete(webhook_log).where(cond))
            return int(result.rowcount or 0)

        return await self._db.run("webhooks.trim_log", fn)
