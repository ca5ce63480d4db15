"""SQL for the Signal key store: the identity (one row) and a session per (peer, device).

Never log what goes through here: it is key material.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables import identity, signal_sessions
from shared.db.engine import Database
from shared.db.types import upsert
from shared.ids import WaId

_ROW_ID = 1


class KeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def load_identity(self) -> str | None:
        async def fn(conn: AsyncConnection) -> str | None:
            value = await conn.scalar(select(identity.c.data).where(identity.c.id == _ROW_ID))
            return None if value is None else str(value)

        return await self._db.run("keys.load_identity", fn)

    async def save_identity_txn(self, conn: AsyncConnection, data: str) -> None:
        values = {"id": _ROW_ID, "data": data, "updated_at": datetime.now(UTC)}
        await upsert(conn, identity, values, key=["id"], update=["data", "updated_at"])

    async def save_identity(self, data: str) -> None:
        await self._db.run("keys.save_identity", lambda conn: self.save_identity_txn(conn, data))

    async def load_sessions(self, peer: WaId) -> dict[int, str]:
        """Every stored session with ``peer``, by device id."""

        async def fn(conn: AsyncConnection) -> dict[int, str]:
            rows = await conn.execute(
                select(signal_sessions.c.device_id, signal_sessions.c.state).where(signal_sessions.c.peer == peer)
            )
            return {int(r.device_id): str(r.state) for r in rows}

        return await self._db.run("keys.load_sessions", fn)

    async def load_session(self, peer: WaId, device_id: int) -> str | None:
        async def fn(conn: AsyncConnection) -> str | None:
            value = await conn.scalar(
                select(signal_sessions.c.state).where(
                    signal_sessions.c.peer == peer, signal_sessions.c.device_id == device_id
                )
            )
            return None if value is None else str(value)

        return await self._db.run("keys.load_session", fn)

    async def save_session_txn(self, conn: AsyncConnection, peer: WaId, device_id: int, state: str) -> None:
        values = {"peer": peer, "device_id": device_id, "state": state, "updated_at": datetime.now(UTC)}
        await upsert(conn, signal_sessions, values, key=["peer", "device_id"], update=["state", "updated_at"])

    async def delete_sessions(self, peer: WaId) -> None:
        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(delete(signal_sessions).where(signal_sessions.c.peer == peer))

        await self._db.run("keys.delete_sessions", fn)
