"""Application settings, registration and health against the fake coreapp."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import DbSettings
from tests.support.services import db_settings_for
from tests.webapp.conftest import Api, FakeCore
from webapp.app import WebApp

CERT = "CmQKIAjGg7vP9r3uGRIGZW50OndhIgVBY21lQJq5/f0F"


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


def _code(body) -> int:
    return int(body["errors"][0]["code"])


async def test_settings_round_trip(admin: Api, core: FakeCore):
    patch = {
        "webhooks": {"url": "https://hooks.example.com/wa", "message": {"sent": True}},
        "callback_backoff_delay_ms": "5000",
    }
    status, body, _ = await admin.call("PATCH", "/v1/settings/application", patch)
    assert status == 200, body
    assert core.last("settings.patch_application") == {
        "application": {
            "webhooks": {"url": "https://hooks.example.com/wa", "message": {"sent": True}},
            "callback_backoff_delay_ms": 5000,
        }
    }
    status, body, _ = await admin.call("GET", "/v1/settings/application")
    app = body["settings"]["application"]
    assert app["webhooks"]["url"] == "https://hooks.example.com/wa"
    assert app["webhooks"]["message"] == {"sent": True, "delivered": True, "read": True}
    assert app["callback_backoff_delay_ms"] == 5000
    status, body, _ = await admin.call("DELETE", "/v1/settings/application")
    assert status == 200 and body["settings"]["application"]["webhooks"]["url"] == ""


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"no_such_key": True}, 1010),
        ({"webhooks": {"nope": 1}}, 1010),
        ({"webhooks": {"max_concurrent_requests": 7}}, 1009),
        ({"callback_persist": "maybe"}, 1009),
        ({"webhooks": {"url": "http://hooks.example.com"}}, 1009),
        ({"webhooks": {"url": "http://127.0.0.1:8080/hook"}}, 1009),
        ({"webhooks": {"url": "ftp://hooks.example.com"}}, 1009),
        ({"webhooks": {"url": "https://"}}, 1009),
    ],
)
async def test_settings_rejected(admin: Api, core: FakeCore, patch, code):
    status, body, _ = await admin.call("PATCH", "/v1/settings/application", patch)
    assert (status, _code(body)) == (400, code), body
    assert not [c for c in core.calls if c[0] == "settings.patch_application"]


class TestLoopbackWebhooksAllowed:
    @pytest.fixture
    def web_options(self):
        return {"allow_http_loopback_webhooks": True}

    @pytest.fixture
    def fetch_options(self):
        return {"allow_loopback": True}  # coreapp must be allowed to deliver there too

    async def test_http_loopback_only(self, admin: Api):
        for url in ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/x"]:
            status, body, _ = await admin.call("PATCH", "/v1/settings/application", {"webhooks": {"url": url}})
            assert status == 200, (url, body)
        status, body, _ = await admin.call(
            "PATCH", "/v1/settings/application", {"webhooks": {"url": "http://hooks.example.com"}}
        )
        assert (status, _code(body)) == (400, 1009)


async def test_register_201_when_registered_202_when_code_sent(admin: Api, core: FakeCore):
    body = {"cc": "1", "phone_number": "5550001", "method": "sms", "cert": CERT}
    status, resp, _ = await admin.call("POST", "/v1/account", body)
    assert status == 201 and set(resp) == {"meta"}
    status, resp, _ = await admin.call("POST", "/v1/account", {**body, "phone_number": "5550002", "pin": "123456"})
    assert status == 202 and resp["account"] == [{"vname": "Acme"}]
    assert core.last("account.register") == {**body, "phone_number": "5550002", "pin": "123456"}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"cc": "1a"}, 1009),
        ({"cc": "1234"}, 1009),
        ({"cc": 1}, 1009),
        ({"phone_number": "555-0001"}, 1009),
        ({"method": "fax"}, 1009),
        ({"method": None}, 1009),
        ({"cert": ""}, 1009),
        ({"cert": "not base64!"}, 1009),
        ({"pin": "12345"}, 1009),
        ({"extra": 1}, 1010),
    ],
)
async def test_register_validation(admin: Api, change, code):
    body = {"cc": "1", "phone_number": "5550001", "method": "sms", "cert": CERT, **change}
    status, resp, _ = await admin.call("POST", "/v1/account", body)
    assert (status, _code(resp)) == (400, code), resp


async def test_register_missing_field(admin: Api):
    status, resp, _ = await admin.call("POST", "/v1/account", {"cc": "1", "phone_number": "5550001", "cert": CERT})
    assert (status, _code(resp)) == (400, 1008)
    assert resp["errors"][0]["details"].startswith("method")


async def test_verify(admin: Api, core: FakeCore):
    status, _, _ = await admin.call("POST", "/v1/account/verify", {"code": "123-456"})
    assert status == 201
    assert core.last("account.verify") == {"code": "123456"}
    status, body, _ = await admin.call("POST", "/v1/account/verify", {"code": "000000"})
    assert (status, _code(body)) == (403, 1005)
    status, body, _ = await admin.call("POST", "/v1/account/verify", {"code": "12"})
    assert (status, _code(body)) == (400, 1009)


async def test_health_statuses(admin: Api, core: FakeCore, webapp: WebApp):
    core.gateway_status = "unregistered"
    _, body, _ = await admin.call("GET", "/v1/health")
    assert body["health"] == {"gateway_status": "unregistered"}
    core.gateway_status = "weird"
    status, body, _ = await admin.call("GET", "/v1/health")
    assert (status, body["health"]) == (200, {"gateway_status": "disconnected"})


async def test_health_when_coreapp_does_not_answer(admin: Api, core: FakeCore):
    core.silent.add("health.get")
    status, body, _ = await admin.call("GET", "/v1/health")
    assert (status, body["health"]) == (200, {"gateway_status": "disconnected"})
    core.silent.clear()
    core.errors["health.get"] = RuntimeError("crash")  # type: ignore[assignment]
    status, body, _ = await admin.call("GET", "/v1/health")
    assert (status, body["health"]) == (200, {"gateway_status": "disconnected"})
