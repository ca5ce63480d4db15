"""SQL for ``message_idempotency``: the keys of retry-safe sends (``coreapp.services.accept``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import IdempotencyRecord
from coreapp.storage.tables_idempotency import message_idempotency
from shared.db.engine import Database
from shared.ids import MessageId

_KEYS_CHUNK = 500
"""Keys per ``IN (…)`` list."""

_t = message_idempotency.c


def _record(row: Any) -> IdempotencyRecord:
    return IdempotencyRecord(row.key_sha256, row.request_sha256, MessageId(row.message_id))


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(self, key_sha256: str, since: datetime) -> IdempotencyRecord | None:
        """The key's record if it was stored at or after ``since`` (an older one no longer counts)."""

        async def find_txn(conn: AsyncConnection) -> IdempotencyRecord | None:
            row = (
                await conn.execute(
                    select(_t.key_sha256, _t.request_sha256, _t.message_id).where(
                        _t.key_sha256 == key_sha256, _t.created_at >= since
                    )
                )
            ).first()
            return None if row is None else _record(row)

        return await self._db.run("messages.idempotency_find", find_txn)

    async def current_txn(
        self, conn: AsyncConnection, keys: Sequence[str], since: datetime
    ) -> dict[str, IdempotencyRecord]:
        """The records of ``keys`` stored at or after ``since``; older records of these keys are deleted first,
        so the caller may store the key again."""
        found: dict[str, IdempotencyRecord] = {}
        unique = sorted(set(keys))
        for start in range(0, len(unique), _KEYS_CHUNK):
            chunk = unique[start : start + _KEYS_CHUNK]
            await conn.execute(delete(message_idempotency).where(_t.key_sha256.in_(chunk), _t.created_at < since))
            rows = await conn.execute(
                select(_t.key_sha256, _t.request_sha256, _t.message_id).where(_t.key_sha256.in_(chunk))
            )
            found.update((row.key_sha256, _record(row)) for row in rows)
        return found

    async def insert_many_txn(self, conn: AsyncConnection, records: Sequence[IdempotencyRecord]) -> None:
        """Store new keys (one statement); a key stored meanwhile by another transaction is an ``IntegrityError``."""
        if not records:
            return
        now = datetime.now(UTC)
        await conn.execute(
            insert(message_idempotency),
            [
                {
                    "key_sha256": r.key_sha256,
                    "request_sha256": r.request_sha256,
                    "message_id": r.message_id,
                    "created_at": now,
                }
                for r in records
            ],
        )
