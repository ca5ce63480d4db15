"""SQL for the Signal key store: the identity (one row) and a session per (peer, device).

Never log what goes through here: it is key material.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables import identity, signal_sessions
from coreapp.storage.tables_settings import settings as settings_table
from shared.db.engine import Database
from shared.db.types import upsert
from shared.ids import WaId

_ROW_ID = 1
_CHUNK = 200
"""Rows per multi-row statement: well under every backend's bound-parameter limit (SQLite: 32,766)."""


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

    async def load_sessions_many(self, peers: Iterable[WaId]) -> dict[WaId, dict[int, str]]:
        """Every stored session with each of ``peers``: ``{peer: {device: state}}`` (one query per chunk)."""
        wanted = sorted(set(peers))

        async def fn(conn: AsyncConnection) -> dict[WaId, dict[int, str]]:
            found: dict[WaId, dict[int, str]] = {peer: {} for peer in wanted}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = await conn.execute(
                    select(signal_sessions.c.peer, signal_sessions.c.device_id, signal_sessions.c.state).where(
                        signal_sessions.c.peer.in_(chunk)
                    )
                )
                for r in rows:
                    found[WaId(r.peer)][int(r.device_id)] = str(r.state)
            return found

        if not wanted:
            return {}
        return await self._db.run("keys.load_sessions_many", fn)

    async def save_sessions_txn(self, conn: AsyncConnection, states: Mapping[tuple[WaId, int], str]) -> None:
        """Upsert many ``(peer, device) -> state`` in the caller's transaction (one statement per chunk)."""
        now = datetime.now(UTC)
        rows = [
            {"peer": peer, "device_id": device, "state": state, "updated_at": now}
            for (peer, device), state in sorted(states.items())
        ]
        for start in range(0, len(rows), _CHUNK):
            await conn.execute(_upsert_sessions(conn.dialect.name, rows[start : start + _CHUNK]))

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

    # --- peers' identities (the 480/1028 acknowledgement flow) ------------------------------------------------
    # One JSON document per peer in the ``settings`` table, named ``peer_identity:<wa_id>``:
    # ``{"hash", "created_timestamp", "acknowledged"}`` of the peer's latest identity change.

    async def load_peer_identity(self, peer: WaId) -> dict[str, Any] | None:
        async def fn(conn: AsyncConnection) -> dict[str, Any] | None:
            return await self.peer_identity_txn(conn, peer)

        return await self._db.run("keys.load_peer_identity", fn)

    async def peers_with_identity_records(self) -> set[WaId]:
        """Every peer with an identity-change record (acknowledged or not): the only ones a send may be refused for."""

        async def fn(conn: AsyncConnection) -> set[WaId]:
            rows = await conn.execute(
                select(settings_table.c.name).where(settings_table.c.name.like(_peer_identity_name(WaId("")) + "%"))
            )
            return {WaId(row.name.partition(":")[2]) for row in rows}

        return await self._db.run("keys.peers_with_identity_records", fn)

    async def peer_identity_txn(
        self, conn: AsyncConnection, peer: WaId, *, for_update: bool = False
    ) -> dict[str, Any] | None:
        stmt = select(settings_table.c.value).where(settings_table.c.name == _peer_identity_name(peer))
        if for_update:
            stmt = stmt.with_for_update()
        raw = await conn.scalar(stmt)
        doc = None if raw is None else orjson.loads(raw)
        return doc if isinstance(doc, dict) else None

    async def save_peer_identity_txn(self, conn: AsyncConnection, peer: WaId, doc: Mapping[str, Any]) -> None:
        values = {
            "name": _peer_identity_name(peer),
            "value": orjson.dumps(dict(doc)).decode(),
            "updated_at": datetime.now(UTC),
        }
        await upsert(conn, settings_table, values, key=["name"], update=["value", "updated_at"])

    async def acknowledge_peer_identity(self, peer: WaId, key_hash: str) -> dict[str, Any] | None:
        """Mark the peer's identity acknowledged if ``key_hash`` is its current hash; the stored document after
        (unchanged on a wrong hash), ``None`` when none is recorded."""

        async def fn(conn: AsyncConnection) -> dict[str, Any] | None:
            doc = await self.peer_identity_txn(conn, peer, for_update=True)
            if doc is None or doc.get("hash") != key_hash or doc.get("acknowledged") is True:
                return doc
            doc = {**doc, "acknowledged": True}
            await self.save_peer_identity_txn(conn, peer, doc)
            return doc

        return await self._db.run("keys.acknowledge_peer_identity", fn)


def _peer_identity_name(peer: WaId) -> str:
    return f"peer_identity:{peer}"


def _upsert_sessions(dialect: str, rows: list[dict[str, Any]]) -> Any:
    """A multi-row ``INSERT … ON CONFLICT/DUPLICATE KEY UPDATE state, updated_at`` for ``signal_sessions``."""
    if dialect in ("mysql", "mariadb"):
        my = mysql.insert(signal_sessions).values(rows)
        return my.on_duplicate_key_update({"state": my.inserted.state, "updated_at": my.inserted.updated_at})
    if dialect == "postgresql":
        pg = postgresql.insert(signal_sessions).values(rows)
        return pg.on_conflict_do_update(
            index_elements=["peer", "device_id"],
            set_={"state": pg.excluded.state, "updated_at": pg.excluded.updated_at},
        )
    if dialect == "sqlite":
        lite = sqlite.insert(signal_sessions).values(rows)
        return lite.on_conflict_do_update(
            index_elements=["peer", "device_id"],
            set_={"state": lite.excluded.state, "updated_at": lite.excluded.updated_at},
        )
    raise NotImplementedError(f"save_sessions_txn: unsupported dialect {dialect!r}")
