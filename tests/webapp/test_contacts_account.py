"""``/v1/contacts``, two-step and shards at the HTTP edge: validation codes, roles and the RPC payloads."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import DbEngine, DbSettings
from shared.errors import ApiError, ErrorCode
from tests.webapp.conftest import Api, FakeCore
from webapp.app import WebApp
from webapp.storage import Role

NUMBER = {"cc": "1", "phone_number": "6315551000"}


class AccountContactsCore(FakeCore):
    """``FakeCore`` plus the methods of this issue."""

    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method in self.errors or method in self.silent:
            return await super().handle(method, payload)
        if method == "contacts.check":
            self.calls.append((method, payload))
            answers = [{"input": c, "status": "valid", "wa_id": f"1{i}"} for i, c in enumerate(payload["contacts"])]
            return {"contacts": answers}
        if method in ("account.set_two_step", "account.remove_two_step"):
            self.calls.append((method, payload))
            return {}
        if method == "account.get_shards":
            self.calls.append((method, payload))
            return {"shards": 1}
        if method == "account.set_shards":
            self.calls.append((method, payload))
            if payload["shards"] != 1:
                raise ApiError(ErrorCode.INVALID_PARAMETER, "multiconnect is not enabled")
            return {"shards": 1}
        return await super().handle(method, payload)


@pytest.fixture
def core() -> FakeCore:
    return AccountContactsCore()


@pytest.fixture
def app_db(tmp_path) -> DbSettings:
    """Validation does not depend on the database: SQLite keeps these fast."""
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "web.db")


def _code(body: dict) -> int:
    return int(body["errors"][0]["code"])


async def _user_token(admin: Api, webapp: WebApp) -> str:
    assert webapp.auth is not None and webapp.storage is not None
    await webapp.storage.create_user("ops", await webapp.auth.hash_password("Ops-Pass1!"), Role.USER, False)
    status, body, _ = await admin.login("ops", "Ops-Pass1!")
    assert status == 200
    return str(body["users"][0]["token"])


# --- contacts ---------------------------------------------------------------------------------------------


async def test_contacts_defaults_and_payload(admin: Api, core: FakeCore, webapp: WebApp) -> None:
    status, body, _ = await admin.call("POST", "/v1/contacts", {"contacts": ["+1 (516) 283-7151"]})
    assert status == 200
    assert body["contacts"] == [{"input": "+1 (516) 283-7151", "status": "valid", "wa_id": "10"}]
    expected = {"blocking": "no_wait", "contacts": ["+1 (516) 283-7151"], "force_check": False}
    assert core.last("contacts.check") == expected
    payload = {"blocking": "wait", "contacts": ["1", "2"], "force_check": True}
    status, body, _ = await admin.call("POST", "/v1/contacts", payload)
    assert status == 200 and len(body["contacts"]) == 2
    assert core.last("contacts.check") == payload
    # Any authenticated user may check contacts (it is what sending needs).
    token = await _user_token(admin, webapp)
    status, _, _ = await admin.call("POST", "/v1/contacts", {"contacts": ["1"]}, token=token)
    assert status == 200
    status, body, _ = await admin.call("POST", "/v1/contacts", {"contacts": ["1"]}, token="")
    assert (status, _code(body)) == (401, 1005)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, 1008),
        ({"blocking": "wait"}, 1008),
        ({"contacts": []}, 1009),
        ({"contacts": "+15162837151"}, 1009),
        ({"contacts": [15162837151]}, 1009),
        ({"contacts": [""]}, 1009),
        ({"contacts": ["1" * 65]}, 1009),
        ({"contacts": ["1"] * 1001}, 1009),
        ({"contacts": ["1"], "blocking": "later"}, 1009),
        ({"contacts": ["1"], "force_check": "true"}, 1009),
        ({"contacts": ["1"], "extra": 1}, 1010),
    ],
)
async def test_contacts_validation(admin: Api, core: FakeCore, payload: dict[str, Any], code: int) -> None:
    status, body, _ = await admin.call("POST", "/v1/contacts", payload)
    assert (status, _code(body)) == (400, code), body
    assert not [c for c in core.calls if c[0] == "contacts.check"]


async def test_contacts_max_batch_and_malformed(admin: Api) -> None:
    status, body, _ = await admin.call("POST", "/v1/contacts", {"contacts": ["1"] * 1000})
    assert status == 200 and len(body["contacts"]) == 1000
    status, body, _ = await admin.call("POST", "/v1/contacts", data="[1")
    assert (status, _code(body)) == (400, 1025)


async def test_contacts_not_ready_is_1011(admin: Api, core: FakeCore) -> None:
    core.errors["contacts.check"] = ApiError(ErrorCode.NOT_READY, "not connected to the network")
    status, body, _ = await admin.call("POST", "/v1/contacts", {"contacts": ["1"], "blocking": "wait"})
    assert (status, _code(body)) == (503, 1011)


# --- two-step ---------------------------------------------------------------------------------------------

TWO_STEP = "/v1/settings/account/two-step"


async def test_two_step_set_and_remove(admin: Api, core: FakeCore) -> None:
    status, body, _ = await admin.call("POST", TWO_STEP, {"pin": "123456"})
    assert status == 200 and set(body) == {"meta"}
    assert core.last("account.set_two_step") == {"pin": "123456"}
    status, body, _ = await admin.call("DELETE", TWO_STEP)
    assert status == 200 and set(body) == {"meta"}
    assert core.last("account.remove_two_step") == {}


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, 1008),
        ({"pin": "12345"}, 1009),
        ({"pin": "1234567"}, 1009),
        ({"pin": "12345a"}, 1009),
        ({"pin": 123456}, 1009),
        ({"pin": "123456", "code": "1"}, 1010),
    ],
)
async def test_two_step_validation(admin: Api, core: FakeCore, payload: dict[str, Any], code: int) -> None:
    status, body, _ = await admin.call("POST", TWO_STEP, payload)
    assert (status, _code(body)) == (400, code)
    assert not [c for c in core.calls if c[0] == "account.set_two_step"]


async def test_two_step_not_ready(admin: Api, core: FakeCore) -> None:
    core.errors["account.set_two_step"] = ApiError(ErrorCode.NOT_READY)
    status, body, _ = await admin.call("POST", TWO_STEP, {"pin": "123456"})
    assert (status, _code(body)) == (503, 1011)


# --- shards -----------------------------------------------------------------------------------------------


async def test_shards(admin: Api, core: FakeCore) -> None:
    status, body, _ = await admin.call("GET", "/v1/account/shards")
    assert (status, body["account"]) == (200, {"shards": 1})
    status, body, _ = await admin.call("POST", "/v1/account/shards", {**NUMBER, "shards": 1, "pin": "123456"})
    assert status == 201 and set(body) == {"meta"}
    assert core.last("account.set_shards") == {**NUMBER, "shards": 1, "pin": "123456"}
    status, body, _ = await admin.call("POST", "/v1/account/shards", {**NUMBER, "shards": 4})
    assert (status, _code(body)) == (400, 1009)
    assert "multiconnect" in body["errors"][0]["details"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"cc": "1", "phone_number": "6315551000"}, 1008),
        ({"cc": "1", "shards": 1}, 1008),
        ({**NUMBER, "shards": 3}, 1009),
        ({**NUMBER, "shards": 0}, 1009),
        ({**NUMBER, "shards": 64}, 1009),
        ({**NUMBER, "shards": "2"}, 1009),
        ({**NUMBER, "shards": 1, "pin": "12"}, 1009),
        ({**NUMBER, "cc": "+1", "shards": 1}, 1009),
        ({**NUMBER, "shards": 1, "mode": "ha"}, 1010),
    ],
)
async def test_shards_validation(admin: Api, core: FakeCore, payload: dict[str, Any], code: int) -> None:
    status, body, _ = await admin.call("POST", "/v1/account/shards", payload)
    assert (status, _code(body)) == (400, code), body
    assert not [c for c in core.calls if c[0] == "account.set_shards"]


async def test_account_routes_are_admin_only(admin: Api, webapp: WebApp) -> None:
    token = await _user_token(admin, webapp)
    cases = [
        ("POST", TWO_STEP, {"pin": "123456"}),
        ("DELETE", TWO_STEP, None),
        ("GET", "/v1/account/shards", None),
        ("POST", "/v1/account/shards", {**NUMBER, "shards": 1}),
    ]
    for method, path, payload in cases:
        status, body, _ = await admin.call(method, path, payload, token=token)
        assert (status, _code(body)) == (403, 1005), (method, path)
