"""Status webhooks as coreapp queued them (its outbox table), for the sandbox row tests."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from coreapp.storage.tables_webhooks import webhook_outbox
from tests.coreapp.conftest import Core, eventually


async def statuses(core: Core, message_id: str) -> list[dict[str, Any]]:
    """Every status entry queued for ``message_id``, in outbox order."""
    async with core.app.db.engine.connect() as conn:
        rows = list(await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "status_change")))
    return [s for r in rows for s in orjson.loads(r.body)["statuses"] if s["id"] == message_id]


async def wait_statuses(core: Core, message_id: str, *expected: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Wait until exactly ``expected`` (in any order) are queued for ``message_id``; returns them."""

    async def reached() -> list[dict[str, Any]] | None:
        found = await statuses(core, message_id)
        return found if sorted(s["status"] for s in found) == sorted(expected) else None

    return list(await eventually(reached, timeout_s=timeout_s))
