"""SQL for ``account``: this install's number, pending or registered (one row, id 1)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import Account, AccountStatus
from coreapp.storage.tables import account
from shared.db.engine import Database
from shared.db.types import upsert
from shared.ids import WaId

_ROW_ID = 1


class AccountStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self) -> Account | None:
        return await self._db.run("account.get", self.get_txn)

    async def get_txn(self, conn: AsyncConnection) -> Account | None:
        row = (await conn.execute(select(account).where(account.c.id == _ROW_ID))).first()
        if row is None:
            return None
        return Account(
            cc=row.cc,
            phone_number=row.phone_number,
            status=AccountStatus(row.status),
            wa_id=WaId(row.wa_id) if row.wa_id else None,
            vname=row.vname,
            cert=row.cert,
        )

    async def save_pending(self, cc: str, phone_number: str, cert: str, vname: str) -> None:
        """Remember a registration waiting for its code (replacing any earlier number)."""

        async def fn(conn: AsyncConnection) -> None:
            await self._put_txn(conn, cc, phone_number, AccountStatus.PENDING, None, vname, cert)

        await self._db.run("account.save_pending", fn)

    async def mark_registered_txn(
        self, conn: AsyncConnection, cc: str, phone_number: str, wa_id: WaId, vname: str, cert: str
    ) -> None:
        await self._put_txn(conn, cc, phone_number, AccountStatus.REGISTERED, wa_id, vname, cert)

    async def _put_txn(
        self,
        conn: AsyncConnection,
        cc: str,
        phone_number: str,
        status: AccountStatus,
        wa_id: WaId | None,
        vname: str,
        cert: str,
    ) -> None:
        values = {
            "id": _ROW_ID,
            "cc": cc,
            "phone_number": phone_number,
            "status": status.value,
            "wa_id": wa_id,
            "vname": vname,
            "cert": cert,
            "updated_at": datetime.now(UTC),
        }
        await upsert(conn, account, values, key=["id"], update=[k for k in values if k != "id"])
