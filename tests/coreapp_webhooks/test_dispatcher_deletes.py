"""Delivered rows are deleted in groups, off the delivery path (issue 6), and still: each event posted once per
run, in order, and its row deleted only after its 200."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import OutboxRow, WebhookStore
from shared.db.engine import Database
from tests.coreapp_webhooks.conftest import Receiver, enqueue, wait_until
from tests.coreapp_webhooks.test_dispatcher import Factory, make_dispatcher, use_url

__all__ = ["make_dispatcher"]  # the fixture, imported for pytest

EVENTS = 240


async def _empty(store: WebhookStore) -> bool:
    return await store.count() == 0


async def test_grouped_deletes_never_post_an_event_twice(
    db: Database,
    store: WebhookStore,
    settings_store: SettingsStore,
    receiver: Receiver,
    make_dispatcher: Factory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await use_url(settings_store, receiver.url)
    real_head = store.head

    async def slow_head(limit: int) -> list[OutboxRow]:
        rows = await real_head(limit)
        await asyncio.sleep(0.03)  # the deleter commits while this (older) snapshot is still being used
        return rows

    monkeypatch.setattr(store, "head", slow_head)
    dispatcher = make_dispatcher()
    await dispatcher.start()
    ids = []
    for n in range(EVENTS):
        ids.append(await enqueue(db, store, n))
        dispatcher.notify()
        if n % 20 == 0:
            await asyncio.sleep(0.02)

    await wait_until(lambda: len(receiver.requests) >= EVENTS, timeout=60)
    await wait_until(lambda: _empty(store), timeout=10)
    await asyncio.sleep(0.2)  # anything posted twice would show up now
    posted = [r.event_id for r in receiver.requests]
    assert [e for e, c in Counter(posted).items() if c > 1] == []
    assert posted == ids  # strict order
    assert [r.body["n"] for r in receiver.requests] == list(range(EVENTS))
    deletes = db.stats()["webhooks.delete_many"]["count"]
    assert deletes < EVENTS / 4  # grouped: far fewer delete transactions than events
    assert await dispatcher.queue_size() == 0


async def test_a_failed_event_is_not_deleted_and_stop_flushes_delivered_ones(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use_url(settings_store, receiver.url, backoff_ms=60_000, max_ms=60_000)
    receiver.script = [200, 200, 500]  # the third fails and then waits a minute: it holds back the fourth
    ids = [await enqueue(db, store, n) for n in range(4)]
    dispatcher = make_dispatcher()
    await dispatcher.start()
    await wait_until(lambda: len(receiver.requests) == 3)
    await dispatcher.stop()  # the two delivered rows may still be waiting for their grouped delete
    remaining = [r.event_id for r in await store.head(10)]
    assert remaining == ids[2:]  # delivered ones gone, the failed one and the one behind it kept
