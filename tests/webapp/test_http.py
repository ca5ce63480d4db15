"""The envelope for every outcome: unknown routes, bad JSON, big bodies, crashes, metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import DbSettings
from tests.support.services import db_settings_for
from tests.webapp.conftest import VERSION, Api
from webapp.auth import Authenticator

META = {"api_status": "stable", "version": VERSION}


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


async def test_unknown_route_and_method(admin: Api):
    status, body, _ = await admin.call("GET", "/v1/nope")
    assert status == 404
    assert body == {
        "meta": META,
        "errors": [{"code": 1006, "title": "Resource not found", "details": "no such endpoint: GET /v1/nope"}],
    }
    status, body, headers = await admin.call("GET", "/v1/messages")
    assert status == 405 and body["errors"][0]["code"] == 1006
    assert "POST" in headers["Allow"]
    status, body, _ = await admin.call("GET", "/elsewhere", token="")
    assert (status, body["errors"][0]["code"]) == (404, 1006)


async def test_v1_needs_auth_even_for_unknown_routes(api: Api):
    status, body, _ = await api.call("GET", "/v1/nope")
    assert (status, body["errors"][0]["code"]) == (401, 1005)


async def test_malformed_and_non_object_json(admin: Api):
    for raw in ["{", "[1, 2]", '"text"', ""]:
        status, body, _ = await admin.call(
            "POST", "/v1/messages", data=raw, headers={"Content-Type": "application/json"}
        )
        assert (status, body["errors"][0]["code"]) == (400, 1025), raw
        assert body["meta"] == META


async def test_body_too_large(admin: Api):
    status, body, _ = await admin.call("POST", "/v1/messages", data="x" * (2 * 1024 * 1024))
    assert status == 413
    assert body["errors"][0]["code"] == 1025


async def test_unexpected_exception_is_a_500_with_request_id(admin: Api, monkeypatch: pytest.MonkeyPatch):
    async def boom(self: Authenticator, username: str) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Authenticator, "logout", boom)
    status, body, headers = await admin.call("POST", "/v1/users/logout")
    assert status == 500
    error = body["errors"][0]
    assert error["code"] == 1000
    assert headers["X-Request-Id"] in error["details"]
    assert "secret internals" not in str(body) and "Traceback" not in str(body)


async def test_metrics_json_and_prometheus(admin: Api):
    await admin.call("GET", "/v1/health")
    status, body, _ = await admin.call("GET", "/metrics")
    assert status == 200 and body["meta"] == META
    requests = body["stats"]["web"]["webapp_http_requests_total"]
    assert requests["type"] == "counter"
    assert {"method": "GET", "route": "/v1/health", "status": "200"} in [d["labels"] for d in requests["data"]]
    status, text, headers = await admin.call("GET", "/metrics?format=prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'webapp_rpc_duration_seconds_count{method="health.get",result="ok"}' in text
    status, _, _ = await admin.call("GET", "/metrics", token="")
    assert status == 401
