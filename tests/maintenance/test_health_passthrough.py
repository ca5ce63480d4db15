"""webapp passes coreapp's critical errors through inside ``health`` (absent when there are none)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import DbSettings
from tests.webapp.conftest import Api, FakeCore, admin, api, core, fetch_options, web_options, webapp

__all__ = ["admin", "api", "core", "fetch_options", "web_options", "webapp"]

DISK = {"code": 1016, "title": "System overloaded", "details": "less than 10 MB free in the data directory /d"}


@pytest.fixture
def app_db(sqlite_db: DbSettings) -> DbSettings:
    return sqlite_db


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the fake coreapp adds as ``errors`` to ``health.get`` (patched before the bus binds ``handle``)."""
    errors: list[dict[str, Any]] = []
    original = FakeCore.handle

    async def handle(self: FakeCore, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await original(self, method, payload)
        return {**answer, "errors": list(errors)} if method == "health.get" and errors else answer

    monkeypatch.setattr(FakeCore, "handle", handle)
    return errors


async def test_health_passes_critical_errors_through(reported: list[dict[str, Any]], admin: Api) -> None:
    _, body, _ = await admin.call("GET", "/v1/health")
    assert body["health"] == {"gateway_status": "connected"}
    reported.append(DISK)
    status, body, _ = await admin.call("GET", "/v1/health")
    assert (status, body["health"]) == (200, {"gateway_status": "connected", "errors": [DISK]})
