"""The stores work on the schema the real coreapp migrations create (not only on ``create_all``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import coreapp
from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from shared.config import DbSettings
from shared.db.engine import Database
from shared.db.migrate import migrate
from tests.coreapp_webhooks.conftest import enqueue

MIGRATIONS = Path(coreapp.__file__).parent / "migrations"


async def test_stores_on_migrated_schema(backend: DbSettings) -> None:
    await migrate(backend, MIGRATIONS, "alembic_version_coreapp")
    db = await Database.connect(backend)
    try:
        store = WebhookStore(db)
        ids = [
            await enqueue(db, store, n, kind)
            for n, kind in enumerate((WebhookKind.INBOUND_MESSAGE, WebhookKind.STATUS_CHANGE))
        ]
        rows = await store.head(10)
        assert [r.event_id for r in rows] == ids
        later = datetime.now(UTC) + timedelta(seconds=5)
        await store.defer(rows[0].seq, 1, later, "HTTP 500")
        assert (await store.head(1))[0].next_attempt_at == later
        await store.delete(rows[0].seq)
        assert await store.count() == 1

        settings = SettingsStore(db)
        new = await settings.patch_application({"webhooks": {"url": "https://hooks.example/x"}})
        assert (await SettingsStore(db).get_application()) == new
    finally:
        await db.close()


async def test_dead_letters_on_migrated_schema(backend: DbSettings) -> None:
    """0004: ``webhook_dead`` and ``webhook_log.action`` as the store uses them."""
    await migrate(backend, MIGRATIONS, "alembic_version_coreapp")
    db = await Database.connect(backend)
    try:
        store = WebhookStore(db)
        event_id = await enqueue(db, store, 1)
        (row,) = await store.head(10)
        assert await store.dead_letter(row, 3, "HTTP 500", "max_attempts")
        (dead,), total = await store.list_dead(10)
        assert (total, dead.event_id, dead.reason, dead.attempts) == (1, event_id, "max_attempts", 3)
        (replayed,), remaining = await store.replay_dead(event_id, 1)
        assert (replayed.event_id, remaining) == (event_id, 0)
        assert [r.event_id for r in await store.head(10)] == [event_id]
        assert await store.collect_dead(datetime.now(UTC) + timedelta(days=1)) == 0
    finally:
        await db.close()
