"""SQL for the Signal key store: the identity (one row) and a session per (peer, device).

Both are sealed at rest (``coreapp.storage.sealing``: AES-256-GCM under a key kept outside the database, bound to
the row), so a copy of the database alone reveals no key.  This module is the only one that seals and opens them;
everything above it sees plaintext JSON.  ``KeyStore.open`` runs at start, after the migrations and before the
keys load: it gets the key, checks it against the rows, and seals the plaintext rows an older version wrote.

Never log what goes through here: it is key material.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.sealing import PREFIX, KeystoreError, Sealer, binding, is_sealed, key_id_of, load_key
from coreapp.storage.tables import identity, signal_sessions
from coreapp.storage.tables_settings import settings as settings_table
from shared.config import KeystoreSettings
from shared.db.engine import Database
from shared.db.types import upsert
from shared.ids import WaId

log = logging.getLogger("openprem.coreapp.keys")

_ROW_ID = 1
_CHUNK = 200
"""Rows per multi-row statement: well under every backend's bound-parameter limit (SQLite: 32,766)."""
_SEAL_BATCH = 500
"""Plaintext sessions sealed per transaction when an older install is upgraded."""
_IDENTITY_ROW = binding("identity", _ROW_ID)


def _session_row(peer: str, device: int) -> bytes:
    return binding("signal_sessions", peer, device)


@dataclass(frozen=True, slots=True)
class KeyRows:
    """Plaintext key material in bulk (a backup): the identity JSON and every ``(peer, device, state JSON)``."""

    identity: str | None
    sessions: list[tuple[str, int, str]]


@dataclass(frozen=True, slots=True)
class SealedKeyRows:
    """The same, as stored: every value sealed for its row."""

    identity: str | None
    sessions: list[tuple[str, int, str]]


@dataclass(frozen=True, slots=True)
class _Survey:
    sealed: bool
    """Whether any row is sealed (then the key must exist: never make a new one)."""
    identity_sealed: bool
    """Sessions are sealed before the identity, so a sealed identity means nothing is left in plaintext."""
    key_id: bytes | None


class KeyStore:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    @classmethod
    async def open(cls, db: Database, settings: KeystoreSettings, data_dir: Path) -> KeyStore:
        """Start-up: the key (made only while nothing is sealed), checked against the rows, then the plaintext
        rows of an older version sealed in place.  ``KeystoreError`` when the key is missing or another one."""
        survey = await db.run("keys.survey", _survey_txn)
        key = await asyncio.to_thread(load_key, settings, data_dir, may_create=not survey.sealed)
        store = cls(db, Sealer(key))
        if survey.sealed and survey.key_id != store._sealer.key_id:
            found = survey.key_id.hex() if survey.key_id is not None else "unknown"
            raise KeystoreError(
                f"the key-store key (id {store._sealer.key_id.hex()}) is not the key the stored identity and "
                f"sessions are sealed with (id {found}): configure that key (WA_KEYSTORE_KEY or "
                "WA_KEYSTORE_KEY_FILE)"
            )
        if not survey.identity_sealed:
            await store._seal_plaintext_rows()
        return store

    async def _seal_plaintext_rows(self) -> None:
        """Seal what an older version stored in plaintext: sessions in batches (a transaction each), then the
        identity, last, so a crash part-way resumes at the next start.  Idempotent."""
        sealed = 0

        async def batch_txn(conn: AsyncConnection) -> int:
            await _secure_delete(conn, True)
            rows = (
                await conn.execute(
                    select(signal_sessions.c.peer, signal_sessions.c.device_id, signal_sessions.c.state)
                    .where(~signal_sessions.c.state.startswith(PREFIX))
                    .order_by(signal_sessions.c.peer, signal_sessions.c.device_id)
                    .limit(_SEAL_BATCH)
                    .with_for_update()
                )
            ).all()
            if rows:
                values = await asyncio.to_thread(self._seal_sessions, [(r.peer, r.device_id, r.state) for r in rows])
                await conn.execute(
                    update(signal_sessions)
                    .where(signal_sessions.c.peer == bindparam("b_peer"))
                    .where(signal_sessions.c.device_id == bindparam("b_device"))
                    .values(state=bindparam("b_state")),
                    [{"b_peer": peer, "b_device": device, "b_state": state} for peer, device, state in values],
                )
            await _secure_delete(conn, False)
            return len(rows)

        while count := await self._db.run("keys.seal_plaintext_sessions", batch_txn):
            sealed += count

        async def identity_txn(conn: AsyncConnection) -> bool:
            value = await conn.scalar(select(identity.c.data).where(identity.c.id == _ROW_ID).with_for_update())
            if value is None or is_sealed(value):
                return False
            data = await asyncio.to_thread(self._sealer.seal, str(value), _IDENTITY_ROW)
            await _secure_delete(conn, True)
            await conn.execute(update(identity).where(identity.c.id == _ROW_ID).values(data=data))
            await _secure_delete(conn, False)
            return True

        if await self._db.run("keys.seal_plaintext_identity", identity_txn):
            sealed += 1
        if sealed:
            log.info("sealed %d key-store rows an older version stored in plaintext", sealed)

    def _seal_sessions(self, rows: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
        return [(peer, device, self._sealer.seal(state, _session_row(peer, device))) for peer, device, state in rows]

    def _open_sessions(self, rows: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
        return [(peer, device, self._sealer.open(state, _session_row(peer, device))) for peer, device, state in rows]

    def _open_session(self, peer: str, device: int, value: object) -> str:
        return self._sealer.open(str(value), _session_row(peer, device))

    async def load_identity(self) -> str | None:
        async def fn(conn: AsyncConnection) -> str | None:
            value = await conn.scalar(select(identity.c.data).where(identity.c.id == _ROW_ID))
            return None if value is None else self._sealer.open(str(value), _IDENTITY_ROW)

        return await self._db.run("keys.load_identity", fn)

    async def save_identity_txn(self, conn: AsyncConnection, data: str) -> None:
        sealed = self._sealer.seal(data, _IDENTITY_ROW)
        values = {"id": _ROW_ID, "data": sealed, "updated_at": datetime.now(UTC)}
        await upsert(conn, identity, values, key=["id"], update=["data", "updated_at"])

    async def save_identity(self, data: str) -> None:
        await self._db.run("keys.save_identity", lambda conn: self.save_identity_txn(conn, data))

    async def load_sessions(self, peer: WaId) -> dict[int, str]:
        """Every stored session with ``peer``, by device id."""

        async def fn(conn: AsyncConnection) -> dict[int, str]:
            rows = await conn.execute(
                select(signal_sessions.c.device_id, signal_sessions.c.state).where(signal_sessions.c.peer == peer)
            )
            return {int(r.device_id): self._open_session(peer, int(r.device_id), r.state) for r in rows}

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
                    found[WaId(r.peer)][int(r.device_id)] = self._open_session(r.peer, int(r.device_id), r.state)
            return found

        if not wanted:
            return {}
        return await self._db.run("keys.load_sessions_many", fn)

    async def save_sessions_txn(self, conn: AsyncConnection, states: Mapping[tuple[WaId, int], str]) -> None:
        """Upsert many ``(peer, device) -> state`` in the caller's transaction (one statement per chunk)."""
        now = datetime.now(UTC)
        rows = [
            {
                "peer": peer,
                "device_id": device,
                "state": self._sealer.seal(state, _session_row(peer, device)),
                "updated_at": now,
            }
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
            return None if value is None else self._open_session(peer, device_id, value)

        return await self._db.run("keys.load_session", fn)

    async def save_session_txn(self, conn: AsyncConnection, peer: WaId, device_id: int, state: str) -> None:
        sealed = self._sealer.seal(state, _session_row(peer, device_id))
        values = {"peer": peer, "device_id": device_id, "state": sealed, "updated_at": datetime.now(UTC)}
        await upsert(conn, signal_sessions, values, key=["peer", "device_id"], update=["state", "updated_at"])

    async def delete_sessions(self, peer: WaId) -> None:
        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(delete(signal_sessions).where(signal_sessions.c.peer == peer))

        await self._db.run("keys.delete_sessions", fn)

    # --- in bulk, for backup and restore ----------------------------------------------------------------------

    async def read_all_txn(self, conn: AsyncConnection) -> SealedKeyRows:
        """The identity and every session as stored (``open_all`` them outside the transaction)."""
        value = await conn.scalar(select(identity.c.data).where(identity.c.id == _ROW_ID))
        rows = await conn.execute(select(signal_sessions.c.peer, signal_sessions.c.device_id, signal_sessions.c.state))
        sessions = [(str(r.peer), int(r.device_id), str(r.state)) for r in rows]
        return SealedKeyRows(None if value is None else str(value), sessions)

    async def open_all(self, rows: SealedKeyRows) -> KeyRows:
        """Plaintext of ``read_all_txn``'s rows (in a thread: a backup may hold many sessions)."""

        def work() -> KeyRows:
            ident = None if rows.identity is None else self._sealer.open(rows.identity, _IDENTITY_ROW)
            return KeyRows(ident, self._open_sessions(rows.sessions))

        return await asyncio.to_thread(work)

    async def seal_all(self, rows: KeyRows) -> SealedKeyRows:
        """``rows`` sealed with this install's key, ready for ``replace_all_txn`` (in a thread)."""

        def work() -> SealedKeyRows:
            ident = None if rows.identity is None else self._sealer.seal(rows.identity, _IDENTITY_ROW)
            return SealedKeyRows(ident, self._seal_sessions(rows.sessions))

        return await asyncio.to_thread(work)

    async def replace_all_txn(self, conn: AsyncConnection, rows: SealedKeyRows) -> None:
        """Put ``rows`` in place of the identity and every session (a restore)."""
        if rows.identity is not None:
            values = {"id": _ROW_ID, "data": rows.identity, "updated_at": datetime.now(UTC)}
            await upsert(conn, identity, values, key=["id"], update=["data", "updated_at"])
        await conn.execute(delete(signal_sessions))
        if rows.sessions:
            now = datetime.now(UTC)
            await conn.execute(
                insert(signal_sessions),
                [{"peer": p, "device_id": d, "state": state, "updated_at": now} for p, d, state in rows.sessions],
            )

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


async def _secure_delete(conn: AsyncConnection, on: bool) -> None:
    """SQLite: zero the pages the plaintext rows free while they are sealed, instead of leaving them readable in
    the file.  (Server databases keep old row versions in their own logs until they recycle them: docs.)"""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql(f"PRAGMA secure_delete = {'ON' if on else 'OFF'}")


async def _survey_txn(conn: AsyncConnection) -> _Survey:
    """What is sealed, and with which key id: the identity row, else any one sealed session (mid-upgrade)."""
    value = await conn.scalar(select(identity.c.data).where(identity.c.id == _ROW_ID))
    if value is not None and is_sealed(str(value)):
        return _Survey(sealed=True, identity_sealed=True, key_id=key_id_of(str(value)))
    state = await conn.scalar(
        select(signal_sessions.c.state).where(signal_sessions.c.state.startswith(PREFIX)).limit(1)
    )
    if state is not None:
        return _Survey(sealed=True, identity_sealed=False, key_id=key_id_of(str(state)))
    return _Survey(sealed=False, identity_sealed=False, key_id=None)
