"""Issue 5 item 2: a ten-minute receiver outage (injected clock) loses nothing and keeps per-peer order; concurrent
delivery by partition; the HMAC signature; the delivery log; the write-only secret."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore, partition_of
from coreapp.webhooks import WebhookDispatcher, payloads
from coreapp.webhooks.dispatcher import SIGNATURE_HEADER, url_host
from shared.appsettings import ApplicationSettings, apply_patch
from shared.bus.contract.ops import WebhookLogEntry
from shared.db.engine import Database
from shared.tasks import TaskSupervisor
from tests.coreapp_webhooks.conftest import LOOPBACK, Receiver, wait_until

BACKOFF_MS = 3000
CAP_MS = 30_000
PEERS = [f"1555000{i:04d}" for i in range(4)]


class FakeTime:
    """The dispatcher's clock and sleeper: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []
        self._moved = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + seconds
        while self.now < target:
            moved = self._moved
            await moved.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()


@pytest.fixture
async def supervisor() -> AsyncIterator[TaskSupervisor]:
    sup = TaskSupervisor("test-webhooks-outage")
    try:
        yield sup
    finally:
        await sup.close()


def _ids(body: dict[str, Any]) -> str:
    if "statuses" in body:
        return f"{body['statuses'][0]['id']}:{body['statuses'][0]['status']}"
    return str(body["messages"][0]["id"])


@pytest.mark.parametrize("outage", ["503", "stopped"])
async def test_ten_minute_outage_loses_nothing_and_keeps_order(
    db: Database, settings_store: SettingsStore, receiver: Receiver, supervisor: TaskSupervisor, outage: str
) -> None:
    fake = FakeTime()
    store = WebhookStore(db, clock=fake.clock)
    deferrals: list[float] = []  # seconds from each failure to its retry
    real_defer = store.defer

    async def recording_defer(seq: int, attempts: int, next_at: datetime, error: str) -> None:
        deferrals.append(next_at.timestamp() - fake.now)
        await real_defer(seq, attempts, next_at, error)

    store.defer = recording_defer  # type: ignore[method-assign]
    await settings_store.patch_application(
        {
            "webhooks": {"url": receiver.url, "max_concurrent_requests": 6},
            "callback_backoff_delay_ms": BACKOFF_MS,
            "max_callback_backoff_delay_ms": CAP_MS,
        }
    )
    dispatcher = WebhookDispatcher(
        db, store, settings_store, supervisor, fake.clock, sleeper=fake.sleep, idle_poll_s=1.0, targets=LOOPBACK
    )
    await dispatcher.start()
    expected: dict[str, list[str]] = defaultdict(list)
    n = 0

    async def traffic() -> None:
        """Per peer: an inbound message, then sent/delivered/read of the reply it caused."""
        nonlocal n
        for peer in PEERS:
            n += 1
            bodies = [
                payloads.inbound_message(
                    {"id": f"in{n}", "type": "text", "timestamp": fake.now, "text": {"body": "hi"}}, peer, "P"
                ),
                *(payloads.status(f"out{n}", peer, s, fake.now) for s in ("sent", "delivered", "read")),
            ]
            for body in bodies:
                await db.run("test.enqueue", lambda c, b=body: store.enqueue_txn(c, WebhookKind.STATUS_CHANGE, b))
                expected[peer].append(_ids(body))
        dispatcher.notify()

    try:
        await traffic()  # before the outage: goes through
        await wait_until(lambda: len(receiver.delivered()) == 16)
        if outage == "503":
            receiver.script = [503] * 100_000
        else:
            await receiver.stop()
        for second in range(600):  # ten minutes of traffic while the receiver is down
            if second % 15 == 0:
                await traffic()
            fake.advance(1.0)
            await asyncio.sleep(0.002)
        failures_while_down = len(deferrals)
        if outage == "503":
            receiver.script = []
        else:
            await receiver.start()  # same port
        total = sum(len(v) for v in expected.values())

        async def drained() -> bool:
            fake.advance(1.0)
            return len(receiver.delivered()) >= total and await store.count() == 0

        await wait_until(drained, timeout=60.0)
        attempts = len(receiver.requests) + (len(deferrals) if outage == "stopped" else 0)
        await wait_until(lambda: _logged(store, attempts), timeout=10.0)  # the log is written off the delivery path
    finally:
        await dispatcher.stop()

    got: dict[str, list[str]] = defaultdict(list)
    for body in receiver.delivered():
        got[partition_of(body)].append(_ids(body))
    assert got == expected  # every event, in order per peer, none lost
    assert failures_while_down >= 10  # retries went on through the outage...
    assert max(deferrals) == CAP_MS / 1000  # ...reaching the cap...
    assert all(d <= CAP_MS / 1000 + 1e-6 for d in deferrals)  # ...never beyond it
    assert {BACKOFF_MS / 1000, 2 * BACKOFF_MS / 1000, 3 * BACKOFF_MS / 1000} <= set(deferrals)  # linear
    log = await store.read_log(5000)
    assert len(log) == attempts
    assert any(e.status == 200 for e in log) and any(e.status != 200 for e in log)
    assert all(e.host == url_host(receiver.url) and "token" not in e.host for e in log)


async def test_partitions_go_in_parallel_but_one_at_a_time_each(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, supervisor: TaskSupervisor
) -> None:
    """With a slow receiver, several peers are in flight together; never two of one peer."""
    in_flight: dict[str, int] = defaultdict(int)
    max_total = max_per_peer = 0
    original = receiver._handle

    async def slow(request: Any) -> Any:
        nonlocal max_total, max_per_peer
        body = await request.json()
        peer = partition_of(body)
        in_flight[peer] += 1
        max_total = max(max_total, sum(in_flight.values()))
        max_per_peer = max(max_per_peer, in_flight[peer])
        await asyncio.sleep(0.05)
        in_flight[peer] -= 1
        return await original(request)

    receiver._handle = slow  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    peers = [f"1666{i:04d}" for i in range(10)]
    for round_ in range(3):
        for peer in peers:
            body = payloads.status(f"m{round_}", peer, "delivered", 1)
            await db.run("test.enqueue", lambda c, b=body: store.enqueue_txn(c, WebhookKind.STATUS_CHANGE, b))
    await settings_store.patch_application({"webhooks": {"url": receiver.url, "max_concurrent_requests": 6}})
    dispatcher = WebhookDispatcher(db, store, settings_store, supervisor, targets=LOOPBACK)
    await dispatcher.start()
    try:
        await wait_until(lambda: len(receiver.delivered()) == 30)
    finally:
        await dispatcher.stop()
    assert max_per_peer == 1
    assert 2 <= max_total <= 6
    for peer in peers:
        mine = [b["statuses"][0]["id"] for b in receiver.delivered() if partition_of(b) == peer]
        assert mine == ["m0", "m1", "m2"]


async def test_a_failing_head_pauses_every_partition(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, supervisor: TaskSupervisor
) -> None:
    receiver.script = [500, 500]
    await settings_store.patch_application(
        {"webhooks": {"url": receiver.url}, "callback_backoff_delay_ms": 100, "max_callback_backoff_delay_ms": 200}
    )
    first = payloads.status("a", "1777", "delivered", 1)
    await db.run("test.enqueue", lambda c: store.enqueue_txn(c, WebhookKind.STATUS_CHANGE, first))
    dispatcher = WebhookDispatcher(db, store, settings_store, supervisor, targets=LOOPBACK)
    await dispatcher.start()
    try:
        await wait_until(lambda: len(receiver.requests) >= 1)
        other = payloads.status("b", "1888", "delivered", 1)
        await db.run("test.enqueue", lambda c: store.enqueue_txn(c, WebhookKind.STATUS_CHANGE, other))
        dispatcher.notify()
        await wait_until(lambda: len(receiver.delivered()) == 2)
    finally:
        await dispatcher.stop()
    # "b" (another peer) waited until "a" got its 200: a failing callback blocks the queue.
    assert [r.body["statuses"][0]["id"] for r in receiver.requests] == ["a", "a", "a", "b"]


async def test_signature_header_is_hmac_of_exact_body(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, supervisor: TaskSupervisor
) -> None:
    secret = "s3cret-s3cret-s3cret"
    raw_bodies: list[bytes] = []
    original = receiver._handle

    async def capture(request: Any) -> Any:
        raw_bodies.append(await request.read())
        return await original(request)

    receiver._handle = capture  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    await settings_store.patch_application({"webhooks": {"url": receiver.url, "secret": secret}})
    await db.run("test.enqueue", lambda c: store.enqueue_txn(c, WebhookKind.ERROR, payloads.error(1, "x")))
    dispatcher = WebhookDispatcher(db, store, settings_store, supervisor, targets=LOOPBACK)
    await dispatcher.start()
    try:
        await wait_until(lambda: len(receiver.delivered()) == 1)
        await settings_store.patch_application({"webhooks": {"secret": ""}})
        await db.run("test.enqueue", lambda c: store.enqueue_txn(c, WebhookKind.ERROR, payloads.error(2, "y")))
        dispatcher.notify()
        await wait_until(lambda: len(receiver.delivered()) == 2)
        await wait_until(lambda: _logged(store, 2))
    finally:
        await dispatcher.stop()
    expected = "sha256=" + hmac.new(secret.encode(), raw_bodies[0], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(receiver.requests[0].headers[SIGNATURE_HEADER], expected)
    assert SIGNATURE_HEADER not in receiver.requests[1].headers
    log = await store.read_log(10)
    assert [e.attempt for e in log] == [1, 1] and [e.status for e in log] == [200, 200]


async def _logged(store: WebhookStore, n: int) -> bool:
    return len(await store.read_log(10_000)) >= n


def test_secret_is_write_only() -> None:
    settings = apply_patch(ApplicationSettings(), {"webhooks": {"secret": "x" * 20}})
    assert settings.webhooks.secret == "x" * 20
    assert settings.model_dump(mode="json")["webhooks"]["secret"] == "****"
    assert "xxxx" not in repr(settings)
    assert ApplicationSettings().model_dump(mode="json")["webhooks"]["secret"] == ""
    for bad in ("****", "short"):
        with pytest.raises(ValueError):
            apply_patch(ApplicationSettings(), {"webhooks": {"secret": bad}})


async def test_log_is_trimmed_by_rows_and_age(store: WebhookStore) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=8)
    entries = [WebhookLogEntry(f"e{i}", i, "error", "h", 1, 200, None, 1.0, old if i < 3 else now) for i in range(10)]
    await store.add_log(entries)
    assert await store.trim_log(5, now - timedelta(days=7)) == 5
    assert [e.event_id for e in await store.read_log(100)] == ["e9", "e8", "e7", "e6", "e5"]


def test_partition_of() -> None:
    assert partition_of(payloads.status("m", "123", "read", 1)) == "123"
    msg = payloads.inbound_message({"id": "i", "type": "text", "timestamp": 1}, "456", "n")
    assert partition_of(msg) == "456"
    assert partition_of(payloads.error(1, "t")) == ""


async def test_waiting_partitions_start_without_reading_the_outbox_again(
    db: Database, store: WebhookStore, settings_store: SettingsStore, receiver: Receiver, supervisor: TaskSupervisor
) -> None:
    """60 peers with one event each and room for 6 at a time: a finishing request starts the next peer from the
    last read (its rows untouched since), so the outbox is read a few times, not once per event; every event still
    arrives once, in each peer's order.  New rows (``notify``) force a fresh read."""
    peers = [f"1777{i:04d}" for i in range(60)]
    for peer in peers:
        body = payloads.status("first", peer, "delivered", 1)
        await db.run("test.enqueue", lambda c, b=body: store.enqueue_txn(c, WebhookKind.STATUS_CHANGE, b))
    await settings_store.patch_application({"webhooks": {"url": receiver.url, "max_concurrent_requests": 6}})
    dispatcher = WebhookDispatcher(db, store, settings_store, supervisor, targets=LOOPBACK)
    await dispatcher.start()
    try:
        await wait_until(lambda: len(receiver.delivered()) == 60)
        reads_for_60 = dispatcher.head_reads
        for peer in peers[:5]:  # later rows for some peers: seen through notify(), never lost behind the snapshot
            body = payloads.status("second", peer, "read", 2)
            await db.run("test.enqueue", lambda c, b=body: store.enqueue_txn(c, WebhookKind.STATUS_CHANGE, b))
            dispatcher.notify()
        await wait_until(lambda: len(receiver.delivered()) == 65)
    finally:
        await dispatcher.stop()
    assert reads_for_60 <= 4, reads_for_60  # 2 here; re-reading after every finished request took 11
    delivered = [(partition_of(b), b["statuses"][0]["id"]) for b in receiver.delivered()]
    assert sorted(delivered) == sorted([(p, "first") for p in peers] + [(p, "second") for p in peers[:5]])
    for peer in peers[:5]:
        assert [i for p, i in delivered if p == peer] == ["first", "second"]
