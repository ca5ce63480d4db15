"""MqttBus against a real Mosquitto: the system broker for plain RPC, a private one to stop and restart.

Each test uses its own bus instance name, so topics and client identifiers never collide between tests or
with leftovers of earlier runs; sessions are short-lived (60 s) for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.bus.base import Payload
from shared.bus.mqtt import BusUnavailableError, MqttBus, _properties
from shared.config import BusKind, BusSettings
from shared.errors import ApiError, ErrorCode
from tests.support.bus import JsonHandler, json_handler
from tests.support.mosquitto import (
    SYSTEM_HOST,
    SYSTEM_PORT,
    PrivateMosquitto,
    free_port,
    mosquitto_binary,
    port_open,
    skip_or_fail,
)

BusFactory = Callable[..., MqttBus]


async def echo(method: str, payload: Payload) -> Payload:
    return {"method": method, "payload": payload}


@pytest.fixture
def system_broker() -> tuple[str, int]:
    if not port_open(SYSTEM_HOST, SYSTEM_PORT):
        skip_or_fail(f"Mosquitto not reachable at {SYSTEM_HOST}:{SYSTEM_PORT}")
    return SYSTEM_HOST, SYSTEM_PORT


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        skip_or_fail("mosquitto binary not installed")
        raise AssertionError  # unreachable; for type checkers
    broker = PrivateMosquitto(tmp_path / "mosquitto", binary=binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _settings(host: str, port: int, instance: str) -> BusSettings:
    return BusSettings(kind=BusKind.MQTT, mqtt_host=host, mqtt_port=port, instance=instance, rpc_timeout_s=5.0)


@pytest.fixture
async def buses() -> AsyncIterator[Callable[..., MqttBus]]:
    """``make(host, port, node_id, instance, handler=None, **kw)``; every bus made is stopped afterwards."""
    made: list[MqttBus] = []

    def make(
        host: str, port: int, node_id: str, instance: str, handler: JsonHandler | None = None, **kw: Any
    ) -> MqttBus:
        kw.setdefault("session_expiry_s", 60)
        bus = MqttBus(_settings(host, port, instance), node_id, **kw)
        if handler is not None:
            bus.serve(json_handler(handler))
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.stop()


def _props(**values: object) -> Properties:
    return _properties(PacketTypes.PUBLISH, **values)


def _instance() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def _pair(
    make: BusFactory, host: str, port: int, handler: JsonHandler, instance: str | None = None, **client_kw: Any
) -> tuple[MqttBus, MqttBus]:
    instance = instance or _instance()
    server = make(host, port, "coreapp", instance, handler)
    client = make(host, port, "webapp", instance, **client_kw)
    await server.start()
    await client.start()
    return server, client


async def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _raw_client(host: str, port: int) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        host, port, identifier=f"raw-{uuid.uuid4().hex[:8]}", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


async def _next_message(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            return message
    raise AssertionError("no message")


# -- plain RPC (system broker) --------------------------------------------------------------------------


async def test_round_trip(system_broker: tuple[str, int], buses: BusFactory) -> None:
    _, client = await _pair(buses, *system_broker, echo)
    payload = {"to": "15551234567", "text": {"body": "héllo"}, "n": [1, 2.5, None, True]}
    assert await client.request("messages.send", payload) == {"method": "messages.send", "payload": payload}


async def test_api_error_crosses_the_bus(system_broker: tuple[str, int], buses: BusFactory) -> None:
    async def handler(method: str, payload: Payload) -> Payload:
        if method == "api":
            raise ApiError(ErrorCode.INVALID_USER, "15551234567 is not a WhatsApp user", href="https://x")
        raise RuntimeError("internal detail that must not leak")

    _, client = await _pair(buses, *system_broker, handler)
    with pytest.raises(ApiError) as info:
        await client.request("api", {})
    assert info.value.code is ErrorCode.INVALID_USER
    assert info.value.details == "15551234567 is not a WhatsApp user"
    assert info.value.href == "https://x"
    with pytest.raises(ApiError) as info:
        await client.request("crash", {})
    assert info.value.code is ErrorCode.GENERIC
    assert info.value.details is None


async def test_timeout_is_not_ready(system_broker: tuple[str, int], buses: BusFactory) -> None:
    async def slow(method: str, payload: Payload) -> Payload:
        await asyncio.sleep(10)
        return {}

    _, client = await _pair(buses, *system_broker, slow)
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await client.request("slow", {}, timeout_s=0.3)
    assert info.value.code is ErrorCode.NOT_READY
    assert time.monotonic() - started < 1.5


async def test_no_server_is_not_ready(system_broker: tuple[str, int], buses: BusFactory) -> None:
    client = buses(*system_broker, "webapp", _instance())
    await client.start()
    with pytest.raises(ApiError) as info:
        await client.request("health.get", {}, timeout_s=0.3)
    assert info.value.code is ErrorCode.NOT_READY


async def test_200_concurrent_requests_are_correlated(system_broker: tuple[str, int], buses: BusFactory) -> None:
    active = 0
    peak = 0

    async def handler(method: str, payload: Payload) -> Payload:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(random.uniform(0, 0.05))
        active -= 1
        return {"i": payload["i"], "double": payload["i"] * 2}

    _, client = await _pair(buses, *system_broker, handler)
    results = await asyncio.gather(*(client.request("m", {"i": i}) for i in range(200)))
    assert results == [{"i": i, "double": i * 2} for i in range(200)]
    assert peak > 1, "requests should run concurrently on the server"


async def test_duplicate_and_late_replies_are_ignored(system_broker: tuple[str, int], buses: BusFactory) -> None:
    """A fake server answers every request twice; the caller uses the first answer and ignores the second."""
    host, port = system_broker
    instance = _instance()
    client = buses(host, port, "webapp", instance)
    async with _raw_client(host, port) as fake:
        await fake.subscribe(f"openprem/{instance}/rpc/req", qos=1)
        await client.start()

        async def answer_twice() -> None:
            async for message in fake.messages:
                props = _props(CorrelationData=getattr(message.properties, "CorrelationData", None))
                request = orjson.loads(message.payload)
                for n in (1, 2):
                    body = orjson.dumps({"ok": {"n": n, "i": request["payload"]["i"]}})
                    topic = getattr(message.properties, "ResponseTopic", "")
                    await fake.publish(topic, body, qos=1, properties=props)

        task = asyncio.create_task(answer_twice())
        try:
            for i in range(3):
                assert await client.request("m", {"i": i}) == {"n": 1, "i": i}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_duplicate_request_runs_once(system_broker: tuple[str, int], buses: BusFactory) -> None:
    """QoS 1 may deliver a request twice: the server runs it once per correlation id."""
    host, port = system_broker
    instance = _instance()
    calls: list[Payload] = []

    async def handler(method: str, payload: Payload) -> Payload:
        calls.append(payload)
        return {"count": len(calls)}

    server = buses(host, port, "coreapp", instance, handler)
    await server.start()
    async with _raw_client(host, port) as caller:
        reply_topic = f"openprem/{instance}/rpc/resp/raw"
        await caller.subscribe(reply_topic, qos=1)
        props = _props(ResponseTopic=reply_topic, CorrelationData=b"same-correlation")
        body = orjson.dumps({"method": "m", "payload": {"x": 1}})
        for _ in range(2):
            await caller.publish(f"openprem/{instance}/rpc/req", body, qos=1, properties=props)
        reply = await _next_message(caller)
        assert orjson.loads(reply.payload) == {"ok": {"count": 1}}
        with pytest.raises(TimeoutError):
            await _next_message(caller, timeout_s=0.5)
    assert calls == [{"x": 1}]


async def test_malformed_request_gets_an_error_reply(system_broker: tuple[str, int], buses: BusFactory) -> None:
    host, port = system_broker
    instance = _instance()
    server = buses(host, port, "coreapp", instance, echo)
    await server.start()
    async with _raw_client(host, port) as caller:
        reply_topic = f"openprem/{instance}/rpc/resp/raw"
        await caller.subscribe(reply_topic, qos=1)
        props = _props(ResponseTopic=reply_topic, CorrelationData=b"c1")
        await caller.publish(f"openprem/{instance}/rpc/req", b"not json", qos=1, properties=props)
        reply = await _next_message(caller)
        assert orjson.loads(reply.payload)["error"]["code"] == 1000


async def test_stop_fails_pending_requests(system_broker: tuple[str, int], buses: BusFactory) -> None:
    async def slow(method: str, payload: Payload) -> Payload:
        await asyncio.sleep(10)
        return {}

    _, client = await _pair(buses, *system_broker, slow)
    pending = asyncio.create_task(client.request("slow", {}))
    await asyncio.sleep(0.2)
    await client.stop()
    with pytest.raises(ApiError) as info:
        await pending
    assert info.value.code is ErrorCode.NOT_READY
    with pytest.raises(ApiError) as info:
        await client.request("slow", {})
    assert info.value.code is ErrorCode.NOT_READY


async def test_start_fails_clearly_when_broker_unreachable(buses: BusFactory) -> None:
    port = free_port()
    bus = buses("127.0.0.1", port, "webapp", _instance(), start_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(BusUnavailableError, match=f"127.0.0.1:{port}"):
        await bus.start()
    assert time.monotonic() - started < 3
    assert not bus.connected


async def test_node_state_retained_with_last_will(system_broker: tuple[str, int], buses: BusFactory) -> None:
    host, port = system_broker
    instance = _instance()
    server = buses(host, port, "coreapp", instance, echo)
    await server.start()
    await server.publish_state({"state": "ready", "role": "primary"})

    async def retained_state() -> Payload:
        async with _raw_client(host, port) as watcher:
            await watcher.subscribe(server.state_topic, qos=1)
            message = await _next_message(watcher)
            assert message.retain
            state: Payload = orjson.loads(message.payload)
            return state

    assert await retained_state() == {"state": "ready", "role": "primary"}

    # An abrupt loss (no DISCONNECT) makes the broker publish the will; the bus then reconnects and
    # republishes its state.
    async with _raw_client(host, port) as watcher:
        await watcher.subscribe(server.state_topic, qos=1)
        assert orjson.loads((await _next_message(watcher)).payload) == {"state": "ready", "role": "primary"}
        sock = server._client._client.socket()  # type: ignore[union-attr]
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        states = [orjson.loads((await _next_message(watcher, 10)).payload) for _ in range(2)]
    assert states == [{"state": "gone"}, {"state": "ready", "role": "primary"}]
    await _wait_until(lambda: server.connected, 10, "reconnect after the socket was cut")

    await server.stop()
    assert await retained_state() == {"state": "gone"}


# -- broker loss and persistent sessions (private broker) ------------------------------------------------


async def test_reconnect_after_broker_restart(private_broker: PrivateMosquitto, buses: BusFactory) -> None:
    server, client = await _pair(buses, private_broker.host, private_broker.port, echo)
    assert await client.request("before", {}) == {"method": "before", "payload": {}}

    private_broker.stop()
    await _wait_until(lambda: not server.connected and not client.connected, 5, "both nodes to notice")
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        await client.request("during", {})
    assert info.value.code is ErrorCode.NOT_READY
    assert time.monotonic() - started < 4, "a request on a disconnected bus must fail fast"

    private_broker.start()
    await _wait_until(lambda: server.connected and client.connected, 15, "both nodes to reconnect")
    assert await client.request("after", {"k": 1}) == {"method": "after", "payload": {"k": 1}}


async def test_request_waits_briefly_for_a_reconnect(private_broker: PrivateMosquitto, buses: BusFactory) -> None:
    """A broker blip shorter than the reconnect grace is ridden out by a request made during it."""
    # Backoff is at most ~0.4 s after the first failures; a 10 s grace is ample.
    _, client = await _pair(buses, private_broker.host, private_broker.port, echo, reconnect_grace_s=10.0)
    private_broker.stop()
    await _wait_until(lambda: not client.connected, 5, "client to notice")
    private_broker.start()
    assert await client.request("m", {}, timeout_s=12) == {"method": "m", "payload": {}}


@pytest.mark.parametrize(
    "broker_kind, shared, restart",
    [("system", False, False), ("system", True, False), ("private", False, True)],
    ids=["plain", "shared-subscription", "plain-across-broker-restart"],
)
async def test_request_queued_while_server_offline(
    broker_kind: str, shared: bool, restart: bool, request: pytest.FixtureRequest, buses: BusFactory
) -> None:
    """The server's persistent session queues a request until the server comes back with the same node id."""
    broker: PrivateMosquitto | None = None
    if broker_kind == "system":
        host, port = request.getfixturevalue("system_broker")
    else:
        broker = request.getfixturevalue("private_broker")
        host, port = broker.host, broker.port
    instance = _instance()
    server = buses(host, port, "coreapp", instance, echo, shared_subscription=shared)
    client = buses(host, port, "webapp", instance)
    await server.start()
    await client.start()
    assert await client.request("warmup", {}) == {"method": "warmup", "payload": {}}
    await server.stop()
    if restart:
        assert broker is not None
        broker.restart()
        await _wait_until(lambda: client.connected, 15, "client to reconnect")

    pending = asyncio.create_task(client.request("queued", {"n": 7}, timeout_s=10))
    await asyncio.sleep(0.5)
    assert not pending.done()

    revived = buses(host, port, "coreapp", instance, echo, shared_subscription=shared)
    await revived.start()
    assert await asyncio.wait_for(pending, 10) == {"method": "queued", "payload": {"n": 7}}
    # Stop while the broker is still up (the private broker fixture is torn down before ``buses`` here).
    await client.stop()
    await revived.stop()


async def test_reply_queued_while_caller_offline_survives_broker_restart(
    private_broker: PrivateMosquitto, buses: BusFactory
) -> None:
    """A request in flight when the caller's link drops still gets its reply (session kept by the broker)."""
    release = asyncio.Event()

    async def gated(method: str, payload: Payload) -> Payload:
        await release.wait()
        return {"done": True}

    host, port = private_broker.host, private_broker.port
    instance = _instance()
    # A long grace keeps the pending request through the outage.
    _, client = await _pair(buses, host, port, gated, instance=instance, reconnect_grace_s=30.0)
    pending = asyncio.create_task(client.request("m", {}, timeout_s=20))
    await asyncio.sleep(0.3)
    private_broker.stop()  # persistence: sessions and subscriptions are saved
    await _wait_until(lambda: not client.connected, 5, "client to notice")
    release.set()  # the server answers while the broker is down; paho keeps the reply queued
    await asyncio.sleep(0.3)
    private_broker.start()
    assert await asyncio.wait_for(pending, 20) == {"done": True}


async def test_pending_request_fails_once_disconnected_past_grace(
    private_broker: PrivateMosquitto, buses: BusFactory
) -> None:
    """In-flight requests do not hang for their whole timeout when the broker stays away."""
    never = asyncio.Event()

    async def stuck(method: str, payload: Payload) -> Payload:
        await never.wait()
        return {}

    _, client = await _pair(buses, private_broker.host, private_broker.port, stuck, reconnect_grace_s=1.0)
    pending = asyncio.create_task(client.request("m", {}, timeout_s=30))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    private_broker.stop()
    with pytest.raises(ApiError) as info:
        await asyncio.wait_for(pending, 10)
    assert info.value.code is ErrorCode.NOT_READY
    assert time.monotonic() - started < 5
