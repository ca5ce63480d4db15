"""The dispatcher against a real HTTP receiver on loopback: order, 200-only completion, backoff, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import WebhookStore
from coreapp.webhooks import WebhookDispatcher
from coreapp.webhooks.dispatcher import backoff_ms, redact_url
from shared.appsettings import ApplicationSettings, apply_patch
from shared.config import DbSettings
from shared.db.engine import Database
from shared.tasks import TaskSupervisor
from tests.coreapp_webhooks.conftest import LOOPBACK, Receiver, enqueue, wait_until

Factory = Callable[..., WebhookDispatcher]


@pytest.fixture
async def make_dispatcher(db: Database, store: WebhookStore, settings_store: SettingsStore) -> AsyncIterator[Factory]:
    supervisor = TaskSupervisor("test-webhooks")
    made: list[WebhookDispatcher] = []

    def make(**kwargs: object) -> WebhookDispatcher:
        d = WebhookDispatcher(
            kwargs.pop("db", db),  # type: ignore[arg-type]
            kwargs.pop("store", store),  # type: ignore[arg-type]
            kwargs.pop("settings_store", settings_store),  # type: ignore[arg-type]
            supervisor,
            targets=kwargs.pop("targets", LOOPBACK),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            await d.stop()
        await supervisor.close()


async def use_url(settings_store: SettingsStore, url: str, backoff_ms: int = 50, max_ms: int = 200) -> None:
    await settings_store.patch_application(
        {"webhooks": {"url": url}, "callback_backoff_delay_ms": backoff_ms, "max_callback_backoff_delay_ms": max_ms}
    )


def test_backoff_is_linear_and_capped() -> None:
    small = apply_patch(ApplicationSettings(), {"callback_backoff_delay_ms": 50, "max_callback_backoff_delay_ms": 120})
    assert [backoff_ms(n, small) for n in range(1, 6)] == [50, 100, 120, 120, 120]
    defaults = ApplicationSettings()
    assert [backoff_ms(n, defaults) for n in (1, 2, 300, 301)] == [3000, 6000, 900_000, 900_000]


def test_logged_url_has_no_query_or_credentials() -> None:
    assert redact_url("https://user:pw@hooks.example:8443/in?token=s3cret#frag") == "https://hooks.example:8443/in"


async def test_delivers_in_order_and_deletes(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use_url(settings_store, receiver.url)
    ids = [await enqueue(db, store, n) for n in range(5)]
    dispatcher = make_dispatcher()
    await dispatcher.start()
    ids += [await enqueue(db, store, n) for n in range(5, 8)]
    dispatcher.notify()

    await wait_until(lambda: len(receiver.requests) == 8)
    assert [r.body for r in receiver.requests] == [{"n": n} for n in range(8)]
    assert [r.event_id for r in receiver.requests] == ids
    assert receiver.requests[0].headers["Content-Type"] == "application/json"
    await wait_until(lambda: _empty(store))
    assert dispatcher.stats.delivered == 8
    assert dispatcher.stats.failed_attempts == 0
    assert dispatcher.stats.durations_ms[("success", "status_change")][0] == 8
    assert dispatcher.stats.last_latency_ms is not None


async def test_500s_retry_with_growing_delays_and_hold_the_queue(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use_url(settings_store, receiver.url, backoff_ms=80, max_ms=200)
    receiver.script = [500, 500, 500]
    ids = [await enqueue(db, store, n) for n in range(3)]
    dispatcher = make_dispatcher()
    await dispatcher.start()

    await wait_until(lambda: len(receiver.requests) >= 1)
    await wait_until(lambda: _head_attempts(store, 1))
    head = (await store.head(1))[0]
    assert head.event_id == ids[0]
    assert head.last_error == "HTTP 500"
    assert await store.count() == 3  # a 500 deletes nothing

    await wait_until(lambda: len(receiver.requests) == 6)
    statuses = [(r.event_id, r.status) for r in receiver.requests]
    assert statuses == [(ids[0], 500), (ids[0], 500), (ids[0], 500), (ids[0], 200), (ids[1], 200), (ids[2], 200)]
    gaps = [b.at - a.at for a, b in zip(receiver.requests[:3], receiver.requests[1:4], strict=True)]
    # Linear backoff 80, 160, then the 200 ms cap (lower bounds only: a loaded machine only adds delay).
    for gap, expected in zip(gaps, (0.080, 0.160, 0.200), strict=True):
        assert gap >= expected * 0.9, gaps
    await wait_until(lambda: _empty(store))
    assert dispatcher.stats.failed_attempts == 3
    assert dispatcher.stats.delivered == 3
    assert dispatcher.stats.durations_ms[("500", "status_change")][0] == 3


async def test_receiver_down_then_up(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await receiver.stop()  # the port is now closed; the same port is reused below
    await use_url(settings_store, receiver.url, backoff_ms=50, max_ms=150)
    ids = [await enqueue(db, store, n) for n in range(5)]
    dispatcher = make_dispatcher()
    await dispatcher.start()

    await wait_until(lambda: _head_attempts(store, 2))
    head = (await store.head(1))[0]
    assert head.event_id == ids[0]
    assert head.last_error is not None and "secret" not in head.last_error
    assert await store.count() == 5

    await receiver.start()
    await wait_until(lambda: len(receiver.delivered()) == 5)
    assert receiver.delivered() == [{"n": n} for n in range(5)]
    assert [r.event_id for r in receiver.requests] == ids
    await wait_until(lambda: _empty(store))


async def test_crash_mid_request_loses_nothing(
    backend: DbSettings,
    db: Database,
    store: WebhookStore,
    settings_store: SettingsStore,
    receiver: Receiver,
    make_dispatcher: Factory,
) -> None:
    await use_url(settings_store, receiver.url)
    receiver.hold_first = asyncio.Event()
    ids = [await enqueue(db, store, n) for n in range(3)]
    first = make_dispatcher()
    await first.start()
    await wait_until(receiver.in_flight.is_set)  # the POST of event 0 is in flight, unanswered
    await first.stop()  # the "crash"
    receiver.hold_first.set()  # the receiver answers 200 to a client that is gone
    ids += [await enqueue(db, store, n) for n in range(3, 6)]

    # A new process: new engine, new stores, same database.
    db2 = await Database.connect(backend)
    try:
        store2 = WebhookStore(db2)
        second = make_dispatcher(db=db2, store=store2, settings_store=SettingsStore(db2))
        await second.start()
        await wait_until(lambda: len(receiver.delivered()) == 6)
        assert receiver.delivered() == [{"n": n} for n in range(6)]
        # At least once: event 0 may arrive twice, but in order and nothing after it arrives before it.
        seen = [r.event_id for r in receiver.requests]
        assert [e for i, e in enumerate(seen) if e not in seen[:i]] == ids
        await wait_until(lambda: _empty(store2))
        await second.stop()
    finally:
        await db2.close()


async def test_no_url_rows_wait_until_configured(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    ids = [await enqueue(db, store, n) for n in range(2)]
    dispatcher = make_dispatcher(idle_poll_s=30.0)  # the settings PATCH itself must wake it
    await dispatcher.start()
    await asyncio.sleep(0.3)
    rows = await store.head(10)
    assert [r.event_id for r in rows] == ids
    assert all(r.attempts == 0 for r in rows)

    await use_url(settings_store, receiver.url)
    await wait_until(lambda: len(receiver.requests) == 2, timeout=5.0)
    assert [r.event_id for r in receiver.requests] == ids


async def test_new_url_is_tried_without_waiting_out_the_backoff(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use_url(settings_store, "http://127.0.0.1:9/closed", backoff_ms=60_000, max_ms=60_000)
    await enqueue(db, store, 0)
    dispatcher = make_dispatcher()
    await dispatcher.start()
    await wait_until(lambda: _head_attempts(store, 1))
    await settings_store.patch_application({"webhooks": {"url": receiver.url}})
    await wait_until(lambda: len(receiver.requests) == 1, timeout=5.0)
    await wait_until(lambda: _empty(store))


async def _empty(store: WebhookStore) -> bool:
    return await store.count() == 0


async def _head_attempts(store: WebhookStore, attempts: int) -> bool:
    rows = await store.head(1)
    return bool(rows) and rows[0].attempts >= attempts
