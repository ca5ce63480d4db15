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
