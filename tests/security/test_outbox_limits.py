"""The webhook outbox cannot grow forever (issue 12 point 8): an event that still fails past the age or attempt
limit moves to the dead-letter list, which unblocks its partition; a replay delivers it once; dead rows are
collected after their retention; the oldest pending event's age is a metric; below the limits the On-Prem
ordering (a failing head holds back the rest) is unchanged."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from coreapp.webhooks import WebhookDispatcher
from shared.config import OutboxSettings
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.ids import EventId
from shared.tasks import TaskSupervisor
from tests.contract.conftest import Live
from tests.coreapp_webhooks.conftest import LOOPBACK, Receiver, enqueue, wait_until

DAY = 86_400.0
Factory = Callable[..., WebhookDispatcher]


@pytest.fixture
async def make_dispatcher(db: Database, store: WebhookStore, settings_store: SettingsStore) -> AsyncIterator[Factory]:
    supervisor = TaskSupervisor("test-outbox-limits")
    made: list[WebhookDispatcher] = []

    def make(limits: OutboxSettings | None = None, clock: Callable[[], float] = time.time) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(db, store, settings_store, supervisor, clock, limits=limits, targets=LOOPBACK)
        made.append(dispatcher)
        return dispatcher

    try:
        yield make
    finally:
        for dispatcher in made:
            await dispatcher.stop()
        await supervisor.close()


async def use(settings_store: SettingsStore, receiver: Receiver) -> None:
    await settings_store.patch_application(
        {"webhooks": {"url": receiver.url}, "callback_backoff_delay_ms": 10, "max_callback_backoff_delay_ms": 20}
    )


def queued_ago(db: Database, seconds: float) -> WebhookStore:
    """A store whose clock is ``seconds`` behind: rows it queues look that old."""
    return WebhookStore(db, clock=lambda: time.time() - seconds)


def attempts(receiver: Receiver, event_id: str) -> list[int]:
    return [r.status for r in receiver.requests if r.event_id == event_id]


async def test_attempt_limit_dead_letters_the_head_and_its_partition_moves_on(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use(settings_store, receiver)
    head, behind = await enqueue(db, store, 1), await enqueue(db, store, 2)  # one partition ("")
    receiver.script = [500, 500, 500]
    dispatcher = make_dispatcher(OutboxSettings(max_attempts=3))
    await dispatcher.start()

    await wait_until(lambda: attempts(receiver, behind) == [200])
    assert attempts(receiver, head) == [500, 500, 500]  # the third failure was the last attempt
    assert [r.event_id for r in receiver.requests] == [head, head, head, behind]  # order held until then
    (dead,), total = await store.list_dead(10)
    assert total == 1 and (dead.event_id, dead.reason, dead.attempts) == (head, "max_attempts", 3)
    assert dead.last_error == "HTTP 500"
    await wait_until(lambda: _empty(store))
    assert dispatcher.stats.dead_lettered == 1

    async def logged() -> bool:
        return any(e.action == "dead_lettered" for e in await store.read_log(20))

    await wait_until(logged)
    log = list(reversed(await store.read_log(20)))  # oldest first
    assert [(e.event_id, e.action, e.attempt) for e in log] == [
        (head, "attempt", 1),
        (head, "attempt", 2),
        (head, "attempt", 3),
        (head, "dead_lettered", 3),
        (behind, "attempt", 1),
    ]
    assert log[3].error == "max_attempts: HTTP 500"


async def test_age_limit_dead_letters_an_old_event_after_one_failed_attempt(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use(settings_store, receiver)
    old = await enqueue(db, queued_ago(db, 8 * DAY), 1)  # older than the default 7 days
    behind = await enqueue(db, store, 2)
    receiver.script = [503]
    dispatcher = make_dispatcher()  # the defaults: 7 days, no attempt limit
    assert dispatcher.dead.limits == OutboxSettings(max_age_days=7.0, max_attempts=0)
    await dispatcher.start()

    await wait_until(lambda: attempts(receiver, behind) == [200])
    assert attempts(receiver, old) == [503]
    (dead,), _ = await store.list_dead(10)
    assert (dead.event_id, dead.reason) == (old, "max_age")


async def test_below_the_limits_a_failing_head_still_holds_everything_back(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use(settings_store, receiver)
    head = await enqueue(db, queued_ago(db, 6 * DAY), 1)  # old, but younger than the limit
    behind = await enqueue(db, store, 2)
    receiver.script = [500, 500, 500, 500]
    dispatcher = make_dispatcher(OutboxSettings(max_attempts=6))
    await dispatcher.start()
    await wait_until(lambda: len(attempts(receiver, head)) >= 1)
    status = {"statuses": [{"recipient_id": "15550001"}]}  # another partition, queued while the head fails
    other = await db.run("test.enqueue", lambda conn: store.enqueue_txn(conn, WebhookKind.STATUS_CHANGE, status))
    dispatcher.notify()

    await wait_until(lambda: len(receiver.delivered()) == 3)
    assert attempts(receiver, head) == [500, 500, 500, 500, 200]
    assert [r.event_id for r in receiver.requests][:5] == [head] * 5  # nothing overtook the failing head
    assert {r.event_id for r in receiver.requests[5:]} == {behind, other}
    assert (await store.list_dead(10))[1] == 0


async def test_replay_delivers_a_dead_event_once(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, make_dispatcher: Factory
) -> None:
    await use(settings_store, receiver)
    first, second = await enqueue(db, store, 1), await enqueue(db, store, 2)
    receiver.script = [500, 500]
    dispatcher = make_dispatcher(OutboxSettings(max_attempts=1))
    await dispatcher.start()
    await wait_until(lambda: _dead_total(store, 2))
    assert receiver.delivered() == []

    assert await dispatcher.dead.replay(EventId(first), 1) == (1, 1)
    await wait_until(lambda: attempts(receiver, first) == [500, 200])
    with pytest.raises(ApiError) as info:  # gone from the list: a second replay cannot send it twice
        await dispatcher.dead.replay(EventId(first), 1)
    assert info.value.code is ErrorCode.NOT_FOUND

    assert await dispatcher.dead.replay(None, 1000) == (1, 0)  # replay-all: the rest
    await wait_until(lambda: attempts(receiver, second) == [500, 200])
    await wait_until(lambda: _empty(store))
    assert [b["n"] for b in receiver.delivered()] == [1, 2]
    assert len(receiver.requests) == 4
    assert any(e.action == "replayed" and e.event_id == first for e in await _flushed_log(store, dispatcher))


async def test_dead_events_are_collected_after_their_retention(
    db: Database, store: WebhookStore, settings_store: SettingsStore, make_dispatcher: Factory
) -> None:
    ids = [await enqueue(db, store, n) for n in range(3)]
    rows = await store.head(10)
    for row in rows[:2]:
        assert await queued_ago(db, 10 * DAY).dead_letter(row, 5, "HTTP 500", "max_attempts")  # dead 10 days ago
    assert await store.dead_letter(rows[2], 5, "HTTP 500", "max_attempts")  # dead now
    dispatcher = make_dispatcher(OutboxSettings(dead_retention_days=7))
    assert await dispatcher.collect() == 2
    (kept,), total = await store.list_dead(10)
    assert total == 1 and kept.event_id == ids[2]
    assert await dispatcher.collect() == 0
    assert await store.count() == 0  # dead-lettering took them out of the outbox


async def test_oldest_pending_age_is_a_metric(live: Live) -> None:
    """``callback_oldest_pending_age_seconds`` in /v1/stats/app (JSON and Prometheus) on the live stack; the dead
    list and its replay over HTTP (no webhooks.url: the replayed event waits in the outbox)."""
    core = live.core
    stores = core.stores
    await core.db.run(
        "test.enqueue",
        lambda conn: queued_ago(core.db, 3600).enqueue_txn(conn, WebhookKind.STATUS_CHANGE, {"n": 1}),
    )
    status, body, _ = await live.call("GET", "/v1/stats/app")
    assert status == 200, body
    (sample,) = body["stats"]["app"]["callback_oldest_pending_age_seconds"]["data"]
    assert 3600 <= sample["value"] < 3700
    _, text, _ = await live.call("GET", "/v1/stats/app?format=prometheus")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert 3600 <= families["callback_oldest_pending_age_seconds"].samples[0].value < 3700
    assert families["callback_dead_letters"].samples[0].value == 0

    (row,) = await stores.webhooks.head(10)
    assert await stores.webhooks.dead_letter(row, 9, "HTTP 500", "max_age")
    status, body, _ = await live.call("GET", "/v1/webhooks/dead")
    assert status == 200, body
    (dead,) = body["webhooks"]["dead"]
    assert body["webhooks"]["total"] == 1
    assert (dead["event_id"], dead["reason"], dead["attempts"]) == (row.event_id, "max_age", 9)
    _, body, _ = await live.call("GET", "/v1/stats/app")
    assert body["stats"]["app"]["callback_oldest_pending_age_seconds"]["data"][0]["value"] == 0
    assert body["stats"]["app"]["callback_dead_letters"]["data"][0]["value"] == 1

    status, body, _ = await live.call("POST", "/v1/webhooks/dead/unknown-id/replay")
    assert (status, body["errors"][0]["code"]) == (404, 1006)
    status, body, _ = await live.call("POST", f"/v1/webhooks/dead/{row.event_id}/replay")
    assert (status, body["webhooks"]) == (200, {"replayed": 1, "remaining": 0})
    (queued,) = await stores.webhooks.head(10)
    assert (queued.event_id, queued.attempts, queued.last_error) == (row.event_id, 0, None)
    status, body, _ = await live.call("POST", "/v1/webhooks/dead/replay")
    assert (status, body["webhooks"]) == (200, {"replayed": 0, "remaining": 0})


async def _empty(store: WebhookStore) -> bool:
    return await store.count() == 0


async def _dead_total(store: WebhookStore, n: int) -> bool:
    return (await store.list_dead(1))[1] == n


async def _flushed_log(store: WebhookStore, dispatcher: WebhookDispatcher) -> list[object]:
    async def has_replay() -> bool:
        return any(e.action == "replayed" for e in await store.read_log(50))

    await wait_until(has_replay)
    return list(await store.read_log(50))
