"""SQL for ``contacts``: the network's answer per number and when it was given (the cache's clock)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables_contacts import contacts
from shared.db.engine import Database
from shared.db.types import upsert


@dataclass(frozen=True, slots=True)
class CachedContact:
    number: str
    wa_id: str | None  # None: not a WhatsApp user
    checked_at: datetime


class ContactStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_fresh(self, numbers: Collection[str], not_before: datetime) -> dict[str, CachedContact]:
        """The cached answers for ``numbers`` checked at or after ``not_before`` (older ones are stale)."""
        if not numbers:
            return {}

        async def fn(conn: AsyncConnection) -> dict[str, CachedContact]:
            rows = await conn.execute(
                select(contacts).where(contacts.c.number.in_(sorted(set(numbers))), contacts.c.checked_at >= not_before)
            )
            return {r.number: CachedContact(r.number, r.wa_id, r.checked_at) for r in rows}

        return await self._db.run("contacts.get_fresh", fn)

    async def save(self, answers: Mapping[str, str | None], checked_at: datetime) -> None:
        """Remember the network's answers (number → wa_id or None), replacing older ones."""
        if not answers:
            return

        async def fn(conn: AsyncConnection) -> None:
            for number in sorted(answers):  # one key order for every writer: no deadlocks between them
                values = {"number": number, "wa_id": answers[number], "checked_at": checked_at}
                await upsert(conn, contacts, values, key=["number"], update=["wa_id", "checked_at"])

        await self._db.run("contacts.save", fn)
