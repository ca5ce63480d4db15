"""``POST /v1/messages``: validation codes, what coreapp receives, coreapp's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.support.services import db_settings_for
from tests.webapp.conftest import Api, FakeCore


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


def text(body: str = "hi", **extra):
    return {"to": "+1 (202) 555-0123", "type": "text", "text": {"body": body}, **extra}


async def send(api: Api, payload) -> tuple[int, dict[str, Any]]:
    status, body, _ = await api.call("POST", "/v1/messages", payload)
    return status, body


async def test_send_text(admin: Api, core: FakeCore):
    status, body = await send(admin, text(preview_url=True))
    assert status == 201
    assert body["messages"][0]["id"].startswith("gBEGk")
    assert core.last("messages.send") == {
        "to": "12025550123",
        "type": "text",
        "recipient_type": "individual",
        "preview_url": True,
        "text": {"body": "hi"},
    }


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (text("x" * 4097), 400, 1001),
        ({"type": "text", "text": {"body": "hi"}}, 400, 1008),
        ({"to": "123", "type": "text"}, 400, 1008),
        (text(foo=1), 400, 1010),
        ({**text(), "text": {"body": "hi", "extra": 1}}, 400, 1010),
        (text(""), 400, 1009),
        (text(preview_url="yes"), 400, 1009),
        ({**text(), "to": "not a number"}, 400, 1009),
        ({**text(), "to": "1" * 16}, 400, 1009),
        ({**text(), "to": 12025550123}, 400, 1009),
        ({**text(), "type": "carrier-pigeon"}, 400, 1009),
        ({**text(), "type": "image", "image": {"id": "x"}}, 400, 1010),  # the stray "text" key
        ({k: v for k, v in text().items() if k != "type"}, 400, 1008),
        (text(recipient_type="group"), 400, 1002),
        (text(recipient_type="somebody"), 400, 1002),
    ],
)
async def test_invalid_messages(admin: Api, core: FakeCore, payload, status, code):
    got_status, body = await send(admin, payload)
    assert (got_status, body["errors"][0]["code"]) == (status, code), body
    assert "details" in body["errors"][0]
    assert not [c for c in core.calls if c[0] == "messages.send"]


async def test_max_length_text_is_fine(admin: Api):
    status, _ = await send(admin, text("é" * 4096))
    assert status == 201


async def test_error_details_name_the_field(admin: Api):
    _, body = await send(admin, {"to": "123", "type": "text", "text": {}})
    assert body["errors"][0]["details"].startswith("text.body")


async def test_coreapp_errors_pass_through_with_their_status(admin: Api, core: FakeCore):
    core.errors["messages.send"] = ApiError(ErrorCode.NOT_READY, "still syncing")
    status, body = await send(admin, text())
    assert status == 503
    assert body["errors"] == [{"code": 1011, "title": "Service not ready", "details": "still syncing"}]
    core.errors["messages.send"] = ApiError(ErrorCode.BAD_USER)
    status, body = await send(admin, text())
    assert (status, body["errors"][0]["code"]) == (400, 1021)


async def test_coreapp_not_answering_is_1011(admin: Api, core: FakeCore):
    core.silent.add("messages.send")
    status, body = await send(admin, text())
    assert (status, body["errors"][0]["code"]) == (503, 1011)
