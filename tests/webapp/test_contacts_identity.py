"""``GET``/``PUT /v1/contacts/{wa_id}/identity`` at the HTTP edge: the RPC payloads, validation and error codes."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import DbEngine, DbSettings
from shared.errors import ApiError, ErrorCode
from tests.webapp.conftest import Api, FakeCore

PATH = "/v1/contacts/12025550199/identity"
IDENTITY = {"hash": "q1w2e3r4t5y6", "created_timestamp": 1700000000, "acknowledged": False}


class IdentityCore(FakeCore):
    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method in self.errors or method in self.silent:
            return await super().handle(method, payload)
        if method == "contacts.get_identity":
            self.calls.append((method, payload))
            return {"identity": [IDENTITY]}
        if method == "contacts.ack_identity":
            self.calls.append((method, payload))
            if payload["hash"] != IDENTITY["hash"]:
                raise ApiError(ErrorCode.INVALID_PARAMETER, "hash is not the contact's current identity hash")
            return {"identity": [{**IDENTITY, "acknowledged": True}]}
        return await super().handle(method, payload)


@pytest.fixture
def core() -> FakeCore:
    return IdentityCore()


@pytest.fixture
def app_db(tmp_path) -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "web.db")


def _code(body: dict) -> int:
    return int(body["errors"][0]["code"])


async def test_get_and_acknowledge(admin: Api, core: FakeCore) -> None:
    status, body, _ = await admin.call("GET", PATH)
    assert status == 200 and body["identity"] == [IDENTITY]
    assert core.last("contacts.get_identity") == {"wa_id": "12025550199"}
    status, body, _ = await admin.call("PUT", PATH, {"hash": IDENTITY["hash"]})
    assert status == 200 and body["identity"][0]["acknowledged"] is True
    assert core.last("contacts.ack_identity") == {"wa_id": "12025550199", "hash": IDENTITY["hash"]}
    status, body, _ = await admin.call("PUT", PATH, {"hash": "wrong"})
    assert (status, _code(body)) == (400, 1009)


@pytest.mark.parametrize(
    ("payload", "code"), [({}, 1008), ({"hash": ""}, 1009), ({"hash": 12}, 1009), ({"hash": "x", "y": 1}, 1010)]
)
async def test_ack_validation(admin: Api, core: FakeCore, payload: dict[str, Any], code: int) -> None:
    status, body, _ = await admin.call("PUT", PATH, payload)
    assert (status, _code(body)) == (400, code), body
    assert not [c for c in core.calls if c[0] == "contacts.ack_identity"]


async def test_unknown_identity_is_404(admin: Api, core: FakeCore) -> None:
    core.errors["contacts.get_identity"] = ApiError(ErrorCode.NOT_FOUND, "no identity change recorded")
    status, body, _ = await admin.call("GET", PATH)
    assert (status, _code(body)) == (404, 1006)
