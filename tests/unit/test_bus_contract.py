"""The typed bus contract (``shared.bus.contract``): the docs table is generated from it, requests and replies
are checked at the boundary with the On-Prem codes, and every method crosses ``LocalBus`` as typed structs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from shared.bus.contract import BY_NAME, METHODS, account, contacts, health, messages, ops
from shared.bus.contract.table import splice, table
from shared.bus.local import LocalBus
from shared.bus.rpc import EMPTY, Empty, Method
from shared.errors import ApiError, ErrorCode
from shared.message_types import MessageType

CONTRACTS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


def test_docs_section_3_is_the_generated_table() -> None:
    document = CONTRACTS.read_text(encoding="utf-8")
    assert splice(document) == document, (
        "docs/contracts.md §3 is stale: python -m shared.bus.contract --write docs/contracts.md"
    )
    for method in METHODS:
        assert f"| `{method.name}` |" in table()


def test_method_names_are_unique_and_dotted() -> None:
    assert len(BY_NAME) == len(METHODS) == 39
    assert all(name.count(".") == 1 for name in BY_NAME)


@pytest.mark.parametrize(
    ("method", "raw", "code", "details"),
    [
        (account.REGISTER, b'{"phone_number": "1", "method": "sms", "cert": "c"}', ErrorCode.MISSING_PARAMETER, "`cc`"),
        (
            account.REGISTER,
            b'{"cc": "", "phone_number": "1", "method": "sms", "cert": "c"}',
            ErrorCode.MISSING_PARAMETER,
            "$.cc",
        ),
        (
            account.REGISTER,
            b'{"cc": "1", "phone_number": "1", "method": "fax", "cert": "c"}',
            ErrorCode.INVALID_PARAMETER,
            "$.method",
        ),
        (
            account.SET_SHARDS,
            b'{"cc": "1", "phone_number": "2", "shards": "2"}',
            ErrorCode.INVALID_PARAMETER,
            "one of 1, 2, 4",
        ),
        (messages.SEND, b'{"to": 5}', ErrorCode.INVALID_PARAMETER, "$.to"),
        (messages.SEND, b'{"to": "123456", "type": "fax"}', ErrorCode.INVALID_PARAMETER, "$.type"),
        (contacts.CHECK, b'{"contacts": []}', ErrorCode.INVALID_PARAMETER, "$.contacts"),
        (ops.WEBHOOK_LOG, b'{"limit": 0}', ErrorCode.INVALID_PARAMETER, "$.limit"),
        (ops.STATS_APP, b"not json", ErrorCode.INVALID_REQUEST, "not JSON"),
    ],
)
def test_a_malformed_request_is_1008_or_1009_naming_the_field(
    method: Method[Any, Any], raw: bytes, code: ErrorCode, details: str
) -> None:
    with pytest.raises(ApiError) as info:
        method.decode_request(raw)
    assert info.value.code is code
    assert details in (info.value.details or "")


def test_a_reply_that_does_not_fit_the_contract_is_1014() -> None:
    for raw in (b'{"gateway_status": "sleeping"}', b"{}", b"[]", b"nope"):
        with pytest.raises(ApiError) as info:
            health.HEALTH.decode_reply(raw)
        assert info.value.code is ErrorCode.INTERNAL
        assert "health.get" in (info.value.details or "")


def test_send_carries_exactly_the_members_given() -> None:
    request = msgspec.convert({"to": "123456", "type": "image", "image": {"id": "x"}}, messages.SendMessage)
    assert msgspec.json.decode(messages.SEND.encode_request(request)) == {
        "to": "123456",
        "type": "image",
        "image": {"id": "x"},
    }
    assert request.type is MessageType.IMAGE
    assert request.body() == {"id": "x"}
    assert msgspec.convert({"to": "1", "type": "text"}, messages.SendMessage).body() is None


async def test_call_crosses_the_bus_typed_and_errors_keep_their_code() -> None:
    bus = LocalBus()
    seen: list[tuple[str, bytes]] = []

    async def serve(name: str, payload: bytes) -> bytes:
        seen.append((name, payload))
        if name == messages.MARK_READ.name:
            raise ApiError(ErrorCode.NOT_FOUND, "no message x")
        if name == account.GET_SHARDS.name:
            return b'{"shards": "one"}'  # does not fit the contract
        return health.HEALTH.encode_reply(health.Health(gateway_status=health.GatewayStatus.CONNECTED))

    bus.serve(serve)
    await bus.start()
    reply = await bus.call(health.HEALTH, EMPTY)
    assert reply == health.Health(gateway_status=health.GatewayStatus.CONNECTED, errors=[])
    assert seen == [("health.get", b"{}")]
    with pytest.raises(ApiError) as info:
        await bus.call(messages.MARK_READ, messages.MarkRead(id="x"))
    assert (info.value.code, info.value.details) == (ErrorCode.NOT_FOUND, "no message x")
    with pytest.raises(ApiError) as info:
        await bus.call(account.GET_SHARDS, Empty())
    assert info.value.code is ErrorCode.INTERNAL
    await bus.unserve()
    with pytest.raises(ApiError) as info:
        await bus.call(health.HEALTH, EMPTY)
    assert info.value.code is ErrorCode.NOT_READY  # no longer serving: refused at once
    await bus.stop()
