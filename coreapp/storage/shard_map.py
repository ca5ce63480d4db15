"""SQL for ``shard_map``: the number's shard count (reference §5.3) and the count a change is moving it to.

One row (``id = 1``); a missing row is one shard.  A change is two conditional statements: ``begin_change`` sets
``target`` only while no other change is under way (so two admins cannot interleave), ``finish_change`` makes the
target the count.  Between the two, every shard owner gives its lease up and no one takes a new one
(``coreapp.ha.seat``), which is what moves recipients with their sessions and pending messages: all of that is in
the shared database, and the new owners start only after the old ones stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables_leases import shard_map
from shared.db.clock import db_now_ms
from shared.db.engine import Database
from shared.db.types import upsert

_ROW = 1


@dataclass(frozen=True, slots=True)
class ShardMap:
    shards: int
    target: int | None = None
    """The count a change under way moves to; ``None``: no change."""

    @property
    def changing(self) -> bool:
        return self.target is not None


class ShardMapStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> ShardMap:
        async def fn(conn: AsyncConnection) -> ShardMap:
            row = (await conn.execute(select(shard_map.c.shards, shard_map.c.target))).first()
            if row is None:
                return ShardMap(1)
            return ShardMap(int(row.shards), None if row.target is None else int(row.target))

        # Unfenced: a standby reads it before it holds anything.
        return await self._db.run("shard_map.get", fn, fenced=False)

    async def begin_change(self, target: int) -> ShardMap | None:
        """Start moving to ``target`` shards; the map before, or ``None`` when a change is already under way."""

        async def fn(conn: AsyncConnection) -> ShardMap | None:
            await self._ensure_row(conn)
            taken = await conn.execute(
                update(shard_map)
                .where(shard_map.c.id == _ROW, shard_map.c.target.is_(None))
                .values(target=target, changed_at_ms=db_now_ms())
            )
            if taken.rowcount != 1:
                return None
            shards = await conn.scalar(select(shard_map.c.shards).where(shard_map.c.id == _ROW))
            return ShardMap(int(shards or 1))

        return await self._db.run("shard_map.begin_change", fn)

    async def finish_change(self, target: int) -> None:
        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(
                update(shard_map)
                .where(shard_map.c.id == _ROW, shard_map.c.target == target)
                .values(shards=target, target=None, changed_at_ms=db_now_ms())
            )

        await self._db.run("shard_map.finish_change", fn)

    async def abort_change(self, target: int) -> None:
        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(
                update(shard_map)
                .where(shard_map.c.id == _ROW, shard_map.c.target == target)
                .values(target=None, changed_at_ms=db_now_ms())
            )

        await self._db.run("shard_map.abort_change", fn, fenced=False)

    async def set_offline(self, shards: int) -> bool:
        """Set the count outright (``python -m coreapp shards``, while no node holds a shard); ``False`` while a
        change is under way."""

        async def fn(conn: AsyncConnection) -> bool:
            await self._ensure_row(conn)
            done = await conn.execute(
                update(shard_map)
                .where(shard_map.c.id == _ROW, shard_map.c.target.is_(None))
                .values(shards=shards, changed_at_ms=db_now_ms())
            )
            return done.rowcount == 1

        return await self._db.run("shard_map.set_offline", fn, fenced=False)

    @staticmethod
    async def _ensure_row(conn: AsyncConnection) -> None:
        first = {"id": _ROW, "shards": 1, "target": None, "changed_at_ms": db_now_ms()}
        await upsert(conn, shard_map, first, key=["id"], update=[])
