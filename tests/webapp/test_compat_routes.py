"""Routes as outside On-Prem clients call them: wrong methods on ``/v1/users/login`` and trailing slashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.config import DbSettings
from tests.support.services import db_settings_for
from tests.webapp.conftest import ADMIN_PASSWORD, Api, FakeCore

TO = "12025550123"


class ContactsCore(FakeCore):
    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "contacts.check":
            self.calls.append((method, payload))
            return {"contacts": [{"input": c, "status": "valid", "wa_id": c} for c in payload["contacts"]]}
        return await super().handle(method, payload)


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


@pytest.fixture
def core() -> FakeCore:
    return ContactsCore()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/v1/users/login", "/v1/users/login/", "/v1/users/logout"])
async def test_login_with_a_wrong_method(admin: Api, method: str, path: str) -> None:
    """Without a credential 401 (not a 500: the route is not public for this method), with one 405 + Allow."""
    status, body, headers = await admin.call(method, path, token="")
    assert (status, body["errors"][0]["code"]) == (401, 1005), body
    status, body, headers = await admin.call(method, path)
    assert (status, body["errors"][0]["code"]) == (405, 1006), body
    assert headers["Allow"] == "POST"
    assert "meta" in body


async def test_users_named_like_the_fixed_routes_are_still_users(admin: Api) -> None:
    status, body, _ = await admin.call("GET", "/v1/users/admin")
    assert (status, body["users"][0]["username"]) == (200, "admin")
    status, body, _ = await admin.call("GET", "/v1/users/loginx")
    assert (status, body["errors"][0]["code"]) == (404, 1006)


async def test_trailing_slash_is_the_route_without_it(admin: Api, core: FakeCore) -> None:
    status, body, headers = await admin.call(
        "POST", "/v1/messages/", {"to": TO, "type": "text", "text": {"body": "hi"}}
    )
    assert status == 201, body
    assert "Location" not in headers  # served, not redirected
    assert core.last("messages.send")["text"] == {"body": "hi"}
    status, body, _ = await admin.call("POST", "/v1/contacts/", {"contacts": [TO]})
    assert status == 200, body
    assert body["contacts"] == [{"input": TO, "status": "valid", "wa_id": TO}]
    status, body, _ = await admin.call("GET", "/v1/settings/application/")
    assert status == 200 and "application" in body["settings"]
    # path parameters and a query string survive
    status, body, _ = await admin.call("GET", "/v1/users/admin/?x=1")
    assert (status, body["users"][0]["username"]) == (200, "admin")
    # the login route itself, with Basic credentials (public with the slash too)
    status, body, _ = await admin.call("POST", "/v1/users/login/", basic=("admin", ADMIN_PASSWORD), token="")
    assert status == 200, body


async def test_trailing_slash_keeps_the_other_answers(admin: Api) -> None:
    status, body, headers = await admin.call("GET", "/v1/messages/")
    assert (status, body["errors"][0]["code"]) == (405, 1006)
    assert headers["Allow"] == "POST"
    for path in ("/v1/nope/", "/v1/messages//", "/v1/"):
        status, body, _ = await admin.call("POST", path, {})
        assert (status, body["errors"][0]["code"]) == (404, 1006), path
    status, body, _ = await admin.call("POST", "/v1/messages/", {}, token="")
    assert (status, body["errors"][0]["code"]) == (401, 1005)
    status, body, _ = await admin.call("GET", "/metrics/", token="")
    assert (status, body["errors"][0]["code"]) == (401, 1005)
    status, body, _ = await admin.call("GET", "/metrics/")
    assert status == 200, body


async def test_trailing_slash_metrics_label_is_the_route(admin: Api) -> None:
    await admin.call("POST", "/v1/messages/", {"to": TO, "type": "text", "text": {"body": "hi"}})
    async with admin.session.get(
        admin.base + "/metrics?format=prometheus", headers={"Authorization": f"Bearer {admin.token}"}
    ) as resp:
        text = await resp.text()
    assert 'route="/v1/messages"' in text and 'route="/v1/messages/"' not in text
