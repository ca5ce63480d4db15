"""SQL for backup and restore: one consistent snapshot of what an install is, and one transaction to put it back.

A backup carries the account row, the identity, every Signal session and every row of ``settings`` (the
application settings, media providers, profile, business profile, webhook CA, …).  Messages, webhooks and
caches are not carried: they belong to the install, not to the number.  The keys cross this module in plaintext
(the backup blob has its own envelope); the key store seals them again with this install's key on restore.
Never log what goes through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import Account, AccountStatus
from coreapp.storage.account import AccountStore
from coreapp.storage.keys import KeyRows, KeyStore, SealedKeyRows
from coreapp.storage.tables_settings import settings as settings_table
from shared.db.engine import Database
from shared.db.types import upsert
from shared.ids import WaId


@dataclass(frozen=True, slots=True)
class Snapshot:
    account: Account | None
    identity_json: str | None
    sessions: list[tuple[str, int, str]]
    """``(peer, device_id, state_json)`` for every session."""
    settings: dict[str, str]
    """Row name → the stored JSON text, byte for byte."""


class BackupStore:
    def __init__(self, db: Database, accounts: AccountStore, keys: KeyStore) -> None:
        self._db = db
        self._accounts = accounts
        self._keys = keys

    async def account(self) -> Account | None:
        return await self._accounts.get()

    async def snapshot(self) -> Snapshot:
        """Everything in one read transaction, so identity and sessions agree with each other; the keys come out
        of the key store in plaintext (the backup's own envelope protects them)."""

        async def fn(conn: AsyncConnection) -> tuple[Account | None, SealedKeyRows, dict[str, str]]:
            account = await self._accounts.get_txn(conn)
            keys = await self._keys.read_all_txn(conn)
            rows = await conn.execute(select(settings_table.c.name, settings_table.c.value))
            return account, keys, {r.name: r.value for r in rows}

        account, sealed, settings = await self._db.run("backup.snapshot", fn)
        keys = await self._keys.open_all(sealed)
        return Snapshot(account, keys.identity, keys.sessions, settings)

    async def restore(self, snapshot: Snapshot) -> None:
        """Replace account, identity and sessions (sealed with this install's key); upsert the settings rows
        (rows the backup lacks stay)."""
        account = snapshot.account
        keys: SealedKeyRows | None = None
        if account is not None and account.wa_id is not None and snapshot.identity_json is not None:
            keys = await self._keys.seal_all(KeyRows(snapshot.identity_json, snapshot.sessions))

        async def fn(conn: AsyncConnection) -> None:
            if account is not None and account.wa_id is not None and keys is not None:
                await self._accounts.mark_registered_txn(
                    conn, account.cc, account.phone_number, WaId(account.wa_id), account.vname, account.cert
                )
                await self._keys.replace_all_txn(conn, keys)
            now = datetime.now(UTC)
            for name, value in snapshot.settings.items():
                await upsert(
                    conn,
                    settings_table,
                    {"name": name, "value": value, "updated_at": now},
                    key=["name"],
                    update=["value", "updated_at"],
                )

        await self._db.run("backup.restore", fn)


def account_to_dict(account: Account) -> dict[str, Any]:
    return {
        "cc": account.cc,
        "phone_number": account.phone_number,
        "status": account.status.value,
        "wa_id": account.wa_id,
        "vname": account.vname,
        "cert": account.cert,
    }


def account_from_dict(data: dict[str, Any]) -> Account:
    """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed entry (the caller maps it to 1009)."""
    fields = {k: data[k] for k in ("cc", "phone_number", "vname", "cert")}
    if not all(isinstance(v, str) for v in fields.values()) or not isinstance(data.get("wa_id"), str):
        raise TypeError("account fields must be strings")
    return Account(status=AccountStatus(data["status"]), wa_id=WaId(data["wa_id"]), **fields)
