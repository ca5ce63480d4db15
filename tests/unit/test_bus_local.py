"""LocalBus: the in-process bus whose semantics MqttBus mirrors."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus import LocalBus, make_bus
from shared.bus.base import Payload
from shared.bus.mqtt import MqttBus
from shared.bus.rpc import error_body, ok_body, parse_reply
from shared.config import BusKind, BusSettings
from shared.errors import ApiError, ErrorCode
from tests.support.bus import json_handler


async def echo(method: str, payload: Payload) -> Payload:
    return {"method": method, "payload": payload}


async def test_round_trip() -> None:
    bus = LocalBus()
    bus.serve(json_handler(echo))
    await bus.start()
    assert await bus.request("health.get", {"x": [1, 2]}) == {"method": "health.get", "payload": {"x": [1, 2]}}
    await bus.stop()


async def test_payload_is_copied_both_ways() -> None:
    seen: list[Payload] = []

    async def mutate(method: str, payload: Payload) -> Payload:
        payload["added"] = True
        seen.append(payload)
        return payload

    bus = LocalBus()
    bus.serve(json_handler(mutate))
    await bus.start()
    sent: Payload = {"a": 1}
    result = await bus.request("m", sent)
    assert sent == {"a": 1}
    assert result == {"a": 1, "added": True}
    assert result is not seen[0]


async def test_api_error_crosses_with_code_and_details() -> None:
    async def fail(method: str, payload: Payload) -> Payload:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "bad 'to'")

    bus = LocalBus()
    bus.serve(json_handler(fail))
    await bus.start()
    with pytest.raises(ApiError) as info:
        await bus.request("messages.send", {})
    assert info.value.code is ErrorCode.INVALID_PARAMETER
    assert info.value.details == "bad 'to'"


async def test_other_exception_becomes_generic() -> None:
    async def crash(method: str, payload: Payload) -> Payload:
        raise RuntimeError("secret internals")

    bus = LocalBus()
    bus.serve(json_handler(crash))
    await bus.start()
    with pytest.raises(ApiError) as info:
        await bus.request("m", {})
    assert info.value.code is ErrorCode.GENERIC
    assert info.value.details is None


async def test_timeout_is_not_ready() -> None:
    async def slow(method: str, payload: Payload) -> Payload:
        await asyncio.sleep(5)
        return {}

    bus = LocalBus(default_timeout_s=0.05)
    bus.serve(json_handler(slow))
    await bus.start()
    with pytest.raises(ApiError) as info:
        await bus.request("m", {})
    assert info.value.code is ErrorCode.NOT_READY
    with pytest.raises(ApiError) as info:
        await bus.request("m", {}, timeout_s=0.05)
    assert info.value.code is ErrorCode.NOT_READY


@pytest.mark.parametrize("started, served", [(False, True), (True, False)])
async def test_not_started_or_no_server_is_not_ready(started: bool, served: bool) -> None:
    bus = LocalBus()
    if served:
        bus.serve(json_handler(echo))
    if started:
        await bus.start()
    with pytest.raises(ApiError) as info:
        await bus.request("m", {})
    assert info.value.code is ErrorCode.NOT_READY


async def test_stopped_is_not_ready() -> None:
    bus = LocalBus()
    bus.serve(json_handler(echo))
    await bus.start()
    await bus.stop()
    with pytest.raises(ApiError) as info:
        await bus.request("m", {})
    assert info.value.code is ErrorCode.NOT_READY


def test_reply_helpers() -> None:
    assert parse_reply(ok_body(b'{"a":1}')) == b'{"a":1}'
    with pytest.raises(ApiError) as info:
        parse_reply(error_body(ApiError(ErrorCode.NOT_FOUND, "x")))
    assert (info.value.code, info.value.details) == (ErrorCode.NOT_FOUND, "x")
    for malformed in (b'{"neither": 1}', b"not json", b'{"error": {"code": "x"}}'):
        with pytest.raises(ApiError) as info:
            parse_reply(malformed)
        assert info.value.code is ErrorCode.INTERNAL  # a reply that does not decode has its own code


async def test_make_bus_picks_the_implementation() -> None:
    assert isinstance(make_bus(BusSettings(), "webapp"), LocalBus)
    mqtt = make_bus(BusSettings(kind=BusKind.MQTT, instance="prod-1"), "webapp")
    assert isinstance(mqtt, MqttBus)
    assert mqtt.client_id == "openprem-prod-1-webapp"
    assert mqtt.request_topic == "openprem/prod-1/rpc/req"
    assert mqtt.reply_topic == "openprem/prod-1/rpc/resp/webapp"
    assert mqtt.state_topic == "openprem/prod-1/node/webapp"
    with pytest.raises(ValueError):
        MqttBus(BusSettings(kind=BusKind.MQTT), "bad/node")


async def test_mqtt_bus_not_started_is_not_ready() -> None:
    bus = MqttBus(BusSettings(kind=BusKind.MQTT), "webapp")
    with pytest.raises(ApiError) as info:
        await bus.request("m", {})
    assert info.value.code is ErrorCode.NOT_READY
