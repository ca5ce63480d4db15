"""SQL for ``leases``: take, renew and release a role, and fence a write against the current holder.

Every decision is made by one conditional statement on the database's clock (``shared.db.clock.db_now_ms``):
a lease is free when its row is missing or ``expires_at_ms`` is in the database's past; taking it over sets
the new owner and **increments the epoch**, which is the fencing token.  A renewal only extends a lease that
is still this owner's, under the same epoch, and not yet expired.  Host clocks decide nothing.

``fence_txn`` is what a holder's conflicting writes call inside their own transaction: it reads the lease row
with a shared lock (``FOR SHARE`` / ``LOCK IN SHARE MODE``; SQLite's write lock covers the whole database) and
raises ``StaleEpoch`` unless the row still names this owner and epoch and has not expired.  A takeover's UPDATE
then waits for that transaction, so a write either commits before the takeover or is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables_leases import leases
from shared.db.clock import db_now_ms
from shared.db.engine import Database
from shared.db.types import upsert


class StaleEpoch(Exception):
    """A write by a node that no longer holds the lease (or holds an older epoch of it): refused."""


@dataclass(frozen=True, slots=True)
class Held:
    """A lease as its holder knows it: what ``fence_txn`` and ``renew`` check."""

    name: str
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class LeaseRow:
    name: str
    owner: str
    epoch: int
    expires_at_ms: int
    now_ms: int
    """The database's clock when the row was read."""

    @property
    def expired(self) -> bool:
        return self.expires_at_ms <= self.now_ms


class LeaseStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, name: str, owner: str, ttl_ms: int) -> Held | None:
        """Take ``name`` if it is free (missing or expired by the database's clock); the lease, or ``None``.

        Every take increments the epoch, also when this owner held it already (a node that gave its role up, or
        restarted, must not pass for its earlier self: what that tenure still had in flight is fenced off)."""

        async def fn(conn: AsyncConnection) -> Held | None:
            now = db_now_ms()
            taken = await conn.execute(
                update(leases)
                .where(and_(leases.c.name == name, or_(leases.c.expires_at_ms <= now, leases.c.owner == owner)))
                .values(
                    owner=owner,
                    epoch=leases.c.epoch + 1,
                    expires_at_ms=now + ttl_ms,
                    acquired_at_ms=now,
                )
            )
            if taken.rowcount == 1:
                epoch = await conn.scalar(select(leases.c.epoch).where(leases.c.name == name))
                assert epoch is not None
                return Held(name, owner, int(epoch))
            # No row yet (or one that is held): insert, leaving an existing row alone, then see who has it.
            first = {"name": name, "owner": owner, "epoch": 1, "expires_at_ms": now + ttl_ms, "acquired_at_ms": now}
            await upsert(conn, leases, first, key=["name"], update=[])
            row = (await conn.execute(select(leases.c.owner, leases.c.epoch).where(leases.c.name == name))).first()
            if row is not None and row.owner == owner and int(row.epoch) == 1:
                return Held(name, owner, 1)
            return None

        return await self._db.run("leases.acquire", fn, fenced=False)

    async def renew(self, held: Held, ttl_ms: int) -> bool:
        """Extend ``held`` by ``ttl_ms`` from now; ``False`` when it expired or someone else holds it."""

        async def fn(conn: AsyncConnection) -> bool:
            now = db_now_ms()
            result = await conn.execute(
                update(leases).where(_is_held(held), leases.c.expires_at_ms > now).values(expires_at_ms=now + ttl_ms)
            )
            return result.rowcount == 1

        return await self._db.run("leases.renew", fn, fenced=False)

    async def release(self, held: Held) -> bool:
        """Give ``held`` up at once (a clean stop), so a successor need not wait for the expiry."""

        async def fn(conn: AsyncConnection) -> bool:
            result = await conn.execute(update(leases).where(_is_held(held)).values(expires_at_ms=db_now_ms()))
            return result.rowcount == 1

        return await self._db.run("leases.release", fn, fenced=False)

    async def get(self, name: str) -> LeaseRow | None:
        async def fn(conn: AsyncConnection) -> LeaseRow | None:
            row = (
                await conn.execute(
                    select(leases.c.owner, leases.c.epoch, leases.c.expires_at_ms, db_now_ms().label("now_ms")).where(
                        leases.c.name == name
                    )
                )
            ).first()
            if row is None:
                return None
            return LeaseRow(name, row.owner, int(row.epoch), int(row.expires_at_ms), int(row.now_ms))

        return await self._db.run("leases.get", fn, fenced=False)

    async def all(self) -> list[LeaseRow]:
        async def fn(conn: AsyncConnection) -> list[LeaseRow]:
            result = await conn.execute(
                select(
                    leases.c.name, leases.c.owner, leases.c.epoch, leases.c.expires_at_ms, db_now_ms().label("now_ms")
                ).order_by(leases.c.name)
            )
            return [LeaseRow(r.name, r.owner, int(r.epoch), int(r.expires_at_ms), int(r.now_ms)) for r in result]

        return await self._db.run("leases.all", fn, fenced=False)

    async def forget(self, name: str) -> None:
        """Drop a lease row (a shard that no longer exists after the shard count went down)."""

        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(delete(leases).where(leases.c.name == name))

        await self._db.run("leases.forget", fn, fenced=False)

    @staticmethod
    async def fence_txn(conn: AsyncConnection, held: Held) -> None:
        """Inside a holder's write transaction: ``StaleEpoch`` unless ``held`` is still the live lease.

        The row is read with a shared lock, so a takeover cannot commit between this check and the write."""
        query = select(leases.c.epoch).where(_is_held(held), leases.c.expires_at_ms > db_now_ms())
        if conn.dialect.name != "sqlite":
            query = query.with_for_update(read=True)
        if await conn.scalar(query) is None:
            raise StaleEpoch(f"lease {held.name} epoch {held.epoch} is no longer held by {held.owner}")


def _is_held(held: Held) -> ColumnElement[bool]:
    return and_(leases.c.name == held.name, leases.c.owner == held.owner, leases.c.epoch == held.epoch)
