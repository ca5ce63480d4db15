"""SQL for ``templates``: the cache of the business's message templates, replaced at every sync."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import TemplateRecord
from coreapp.storage.tables import templates
from shared.db.engine import Database


class TemplateStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def replace_all(self, records: Sequence[TemplateRecord]) -> None:
        """Make the cache exactly ``records`` (one transaction)."""

        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(delete(templates))
            if records:
                now = datetime.now(UTC)
                await conn.execute(
                    insert(templates),
                    [
                        {
                            "namespace": r.namespace,
                            "name": r.name,
                            "language": r.language,
                            "status": r.status,
                            "category": r.category,
                            "components": r.components_json,
                            "updated_at": now,
                        }
                        for r in records
                    ],
                )

        await self._db.run("templates.replace_all", fn)

    async def find(self, namespace: str, name: str) -> list[TemplateRecord]:
        """Every language (any status) of one template; the sender picks the language by its policy."""

        async def fn(conn: AsyncConnection) -> list[TemplateRecord]:
            rows = await conn.execute(
                select(templates)
                .where(templates.c.namespace == namespace, templates.c.name == name)
                .order_by(templates.c.language)
            )
            # MySQL compares case-insensitively: keep the exact matches so every backend answers alike.
            return [_record(r) for r in rows if r.namespace == namespace and r.name == name]

        return await self._db.run("templates.find", fn)

    async def list_all(self) -> list[TemplateRecord]:
        async def fn(conn: AsyncConnection) -> list[TemplateRecord]:
            rows = await conn.execute(
                select(templates).order_by(templates.c.namespace, templates.c.name, templates.c.language)
            )
            return [_record(r) for r in rows]

        return await self._db.run("templates.list_all", fn)


def _record(r: Row[Any]) -> TemplateRecord:
    return TemplateRecord(
        namespace=r.namespace,
        name=r.name,
        language=r.language,
        status=r.status,
        category=r.category,
        components_json=r.components,
    )
