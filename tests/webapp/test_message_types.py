"""``POST /v1/messages`` for every message type of reference §2.6, and ``PUT /v1/messages/{id}``: what passes
validation reaches coreapp unchanged (but ``to``), every limit answers with its status and code."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.support.services import db_settings_for
from tests.webapp.conftest import Api, FakeCore
from webapp.schemas.messages import OutboundMessage

TO = "12025550123"


class ReadingCore(FakeCore):
    """``FakeCore`` plus ``messages.mark_read``: known inbound ids are read, ``out-*`` ids are outbound."""

    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method == "messages.mark_read" and method not in self.errors:
            self.calls.append((method, payload))
            if payload["id"].startswith("out-"):
                raise ApiError(ErrorCode.INVALID_PARAMETER, "only received messages can be marked as read")
            if payload["id"] != "ABGGFlA5FpafAgo6tHcNmNjXmuSf":
                raise ApiError(ErrorCode.NOT_FOUND, f"no message {payload['id']}")
            return {}
        return await super().handle(method, payload)


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


@pytest.fixture
def core() -> FakeCore:
    return ReadingCore()


def msg(kind: str, obj: Any, **extra: Any) -> dict[str, Any]:
    return {"to": TO, "type": kind, kind: obj, **extra}


def button(body: str = "Pick one", buttons: int = 2, **extra: Any) -> dict[str, Any]:
    replies = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"Option {i}"}} for i in range(buttons)]
    return msg("interactive", {"type": "button", "body": {"text": body}, "action": {"buttons": replies}, **extra})


def listing(sections: list[dict[str, Any]] | None = None, **action: Any) -> dict[str, Any]:
    if sections is None:
        sections = [{"title": "Mains", "rows": [{"id": "r1", "title": "Pasta", "description": "With tomato"}]}]
    return msg(
        "interactive",
        {"type": "list", "body": {"text": "Menu"}, "action": {"button": "Choose", "sections": sections, **action}},
    )


def rows(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "title": f"Row {i}"} for i in range(count)]


def template(**overrides: Any) -> dict[str, Any]:
    body = {
        "namespace": "openprem_demo",
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/a.png"}}]},
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Kerry"},
                    {"type": "currency", "currency": {"fallback_value": "$1", "code": "USD", "amount_1000": 1000}},
                    {"type": "date_time", "date_time": {"fallback_value": "Feb 25, 1977", "year": 1977, "month": 2}},
                ],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "y"}],
            },
            {"type": "button", "sub_type": "url", "index": "1", "parameters": [{"type": "text", "text": "abc"}]},
        ],
    }
    body.update(overrides)
    return msg("template", body)


def hsm(**overrides: Any) -> dict[str, Any]:
    body = {
        "namespace": "openprem_demo",
        "element_name": "order_update",
        "language": {"policy": "deterministic", "code": "en_US"},
        "localizable_params": [
            {"default": "Kerry"},
            {"default": "$1", "currency": {"currency_code": "USD", "amount_1000": 1000}},
            {"default": "Monday", "date_time": {"component": {"day_of_week": 1, "year": 2024, "month": 5}}},
            {"default": "then", "date_time": {"unix_epoch": {"timestamp": 1700000000}}},
        ],
    }
    body.update(overrides)
    return msg("hsm", body)


CARD = {
    "addresses": [
        {"street": "1 Hacker Way", "city": "Menlo Park", "country_code": "us", "type": "HOME", "zip": "94025"}
    ],
    "birthday": "2012-08-18",
    "emails": [{"email": "kerry@example.com", "type": "work"}],
    "ims": [],
    "name": {"formatted_name": "Kerry Fisher", "first_name": "Kerry", "last_name": "Fisher", "prefix": "Ms"},
    "org": {"company": "Acme", "department": "Sales", "title": "Manager"},
    "phones": [
        {"phone": "+1 (650) 555-1234", "type": "CELL", "wa_id": "16505551234"},
        {"phone": "+1 650", "type": "MAIN"},
    ],
    "urls": [{"url": "https://example.com", "type": "WORK"}],
}

VALID = {
    "image by id": msg("image", {"id": "f043afd0-f0ae-4b9c-ab3d-696fb4c8cd68", "caption": "A cat"}),
    "image by link": msg("image", {"link": "https://example.com/cat.jpg", "provider": {"name": "cdn"}}),
    "audio": msg("audio", {"id": "f043afd0"}),
    "video": msg("video", {"link": "http://example.com/v.mp4", "caption": "Clip"}),
    "document": msg("document", {"id": "d1", "caption": "Invoice", "filename": "invoice.pdf"}),
    "sticker": msg("sticker", {"id": "s1"}),
    "location": msg("location", {"longitude": -122.425, "latitude": 37.758, "name": "Home", "address": "1 Road"}),
    "location edges": msg("location", {"longitude": 180, "latitude": -90}),
    "contacts": msg("contacts", [CARD, {"name": {"formatted_name": "Only A Name"}}]),
    "button": button(buttons=3, header={"type": "text", "text": "Hi"}, footer={"text": "Thanks"}),
    "button with image header": button(header={"type": "image", "image": {"id": "img-1"}}),
    "list": listing(),
    "list of 10 rows in 2 sections": listing(
        [{"title": "A", "rows": rows(5, "a")}, {"title": "B", "rows": rows(5, "b")}]
    ),
    "template": template(),
    "template without components": template(components=[], language={"code": "en"}),
    "template fallback policy": template(components=[], language={"policy": "fallback", "code": "en"}),
    "hsm": hsm(),
    "reaction": msg("reaction", {"message_id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU", "emoji": "👍"}),
    "reaction removed": msg("reaction", {"message_id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU", "emoji": ""}),
    "reaction zwj": msg("reaction", {"message_id": "m1", "emoji": "👨‍👩‍👧‍👦"}),
}


async def send(api: Api, payload: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = await api.call("POST", "/v1/messages", payload)
    return status, body


@pytest.mark.parametrize("payload", list(VALID.values()), ids=list(VALID))
async def test_valid_messages_reach_coreapp(admin: Api, core: FakeCore, payload: dict[str, Any]) -> None:
    status, body = await send(admin, payload)
    assert status == 201, body
    sent = core.last("messages.send")
    kind = payload["type"]
    assert (sent["to"], sent["type"], sent["recipient_type"]) == (TO, kind, "individual")
    assert "preview_url" not in sent
    if kind not in ("location", "template", "hsm"):  # numbers become floats, defaults are filled in
        assert sent[kind] == payload[kind]
    # The documented union accepts exactly what parse_message accepts.
    TypeAdapter(OutboundMessage).validate_python(payload)


async def test_defaults_and_normalisation(admin: Api, core: FakeCore) -> None:
    await send(
        admin,
        template(
            components=[
                {
                    "type": "BUTTON",
                    "sub_type": "QUICK_REPLY",
                    "index": 2,
                    "parameters": [{"type": "payload", "payload": "p"}],
                }
            ],
            language={"code": "en"},
        ),
    )
    sent = core.last("messages.send")["template"]
    assert sent["language"] == {"policy": "deterministic", "code": "en"}
    assert sent["components"] == [
        {"type": "button", "sub_type": "quick_reply", "index": "2", "parameters": [{"type": "payload", "payload": "p"}]}
    ]
    await send(admin, msg("location", {"longitude": 1, "latitude": 2}))
    assert core.last("messages.send")["location"] == {"longitude": 1.0, "latitude": 2.0}


def _replace(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``payload`` with the dotted ``path`` set (``...`` deletes it)."""
    out = copy.deepcopy(payload)
    node: Any = out
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parts[:-1]:
        node = node[part]
    if value is ...:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


IMAGE = VALID["image by id"]
LIST = VALID["list"]
BUTTON = VALID["button"]
TEMPLATE = VALID["template"]
HSM = VALID["hsm"]
REACTION = VALID["reaction"]

INVALID: dict[str, tuple[dict[str, Any], int]] = {
    # media
    "media without id or link": (msg("image", {"caption": "x"}), 1008),
    "media with id and link": (msg("image", {"id": "a", "link": "https://e.com/a"}), 1009),
    "media provider with id": (msg("image", {"id": "a", "provider": {"name": "p"}}), 1010),
    "media link not http": (msg("video", {"link": "ftp://e.com/a"}), 1009),
    "media empty id": (msg("sticker", {"id": ""}), 1009),
    "audio caption": (msg("audio", {"id": "a", "caption": "no"}), 1010),
    "sticker caption": (msg("sticker", {"id": "a", "caption": "no"}), 1010),
    "image filename": (msg("image", {"id": "a", "filename": "a.jpg"}), 1010),
    "document filename path": (msg("document", {"id": "a", "filename": "../etc/passwd"}), 1009),
    "caption too long": (msg("image", {"id": "a", "caption": "x" * 1025}), 1001),
    "media missing object": ({"to": TO, "type": "image"}, 1008),
    "media object not an object": (msg("image", "abc"), 1009),
    "preview_url on media": (msg("image", {"id": "a"}, preview_url=True), 1010),
    "provider without name": (msg("image", {"link": "https://e.com/a", "provider": {}}), 1008),
    # location
    "longitude too big": (msg("location", {"longitude": 180.5, "latitude": 0}), 1009),
    "latitude too small": (msg("location", {"longitude": 0, "latitude": -90.1}), 1009),
    "latitude missing": (msg("location", {"longitude": 0}), 1008),
    "latitude a string": (msg("location", {"longitude": 0, "latitude": "1"}), 1009),
    "location stray key": (msg("location", {"longitude": 0, "latitude": 0, "zoom": 3}), 1010),
    # contacts
    "contacts empty": (msg("contacts", []), 1009),
    "contacts not a list": (msg("contacts", CARD), 1009),
    "contact without name": (msg("contacts", [{"phones": [{"phone": "1"}]}]), 1008),
    "contact without formatted_name": (msg("contacts", [{"name": {"first_name": "K"}}]), 1008),
    "contact bad birthday": (msg("contacts", [{**CARD, "birthday": "18/08/2012"}]), 1009),
    "contact bad phone type": (msg("contacts", [{**CARD, "phones": [{"phone": "1", "type": "PAGER"}]}]), 1009),
    "contact bad address type": (msg("contacts", [{**CARD, "addresses": [{"type": "MOON"}]}]), 1009),
    "contact stray key": (msg("contacts", [{**CARD, "nickname": "K"}]), 1010),
    # interactive: common
    "interactive missing": ({"to": TO, "type": "interactive"}, 1008),
    "interactive type missing": (msg("interactive", {"body": {"text": "x"}}), 1008),
    "interactive type unknown": (msg("interactive", {"type": "carousel"}), 1009),
    "interactive not an object": (msg("interactive", ["button"]), 1009),
    # interactive: button
    "button body missing": (_replace(BUTTON, "interactive.body", ...), 1008),
    "button body too long": (button(body="x" * 1025), 1001),
    "button body empty": (button(body=" "), 1009),
    "no buttons": (button(buttons=0), 1009),
    "four buttons": (button(buttons=4), 1009),
    "duplicate button ids": (_replace(BUTTON, "interactive.action.buttons.1.reply.id", "b0"), 1009),
    "button title too long": (_replace(BUTTON, "interactive.action.buttons.0.reply.title", "x" * 21), 1009),
    "button type not reply": (_replace(BUTTON, "interactive.action.buttons.0.type", "url"), 1009),
    "button header text too long": (button(header={"type": "text", "text": "x" * 61}), 1009),
    "button header without its object": (button(header={"type": "image"}), 1008),
    "button header with two objects": (button(header={"type": "text", "text": "a", "image": {"id": "i"}}), 1010),
    "button footer too long": (button(footer={"text": "x" * 61}), 1009),
    "button stray key": (button(extra_key=1), 1010),
    # interactive: list
    "list no sections": (listing([]), 2015),
    "list 11 sections": (listing([{"title": f"S{i}", "rows": rows(1, f"s{i}-")} for i in range(11)]), 2015),
    "list sections missing": (_replace(LIST, "interactive.action.sections", ...), 1008),
    "list empty section": (listing([{"title": "A", "rows": []}]), 2016),
    "list 11 rows": (listing([{"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}]), 2016),
    "list row title too long": (listing([{"rows": [{"id": "r", "title": "x" * 25}]}]), 1009),
    "list row description too long": (listing([{"rows": [{"id": "r", "title": "t", "description": "x" * 73}]}]), 1009),
    "list duplicate row ids": (listing([{"title": "A", "rows": rows(1)}, {"title": "B", "rows": rows(1)}]), 1009),
    "list untitled section among several": (
        listing([{"title": "A", "rows": rows(1, "a")}, {"rows": rows(1, "b")}]),
        1008,
    ),
    "list button missing": (_replace(LIST, "interactive.action.button", ...), 1008),
    "list button too long": (listing(button="x" * 21), 1009),
    "list section title too long": (listing([{"title": "x" * 25, "rows": rows(1)}]), 1009),
    "list image header": (_replace(LIST, "interactive.header", {"type": "image", "image": {"id": "i"}}), 1009),
    "list body too long": (_replace(LIST, "interactive.body.text", "x" * 1025), 1001),
    # template
    "template namespace missing": (_replace(TEMPLATE, "template.namespace", ...), 1008),
    "template namespace empty": (_replace(TEMPLATE, "template.namespace", ""), 2014),
    "template name missing": (_replace(TEMPLATE, "template.name", ...), 1008),
    "template language missing": (_replace(TEMPLATE, "template.language", ...), 1008),
    "template language code missing": (_replace(TEMPLATE, "template.language", {"policy": "deterministic"}), 1008),
    "template policy unknown": (_replace(TEMPLATE, "template.language.policy", "sometimes"), 1009),
    "template language code bad": (_replace(TEMPLATE, "template.language.code", "english please"), 1009),
    "template component type unknown": (_replace(TEMPLATE, "template.components.0.type", "footer"), 1009),
    "template parameter type unknown": (_replace(TEMPLATE, "template.components.1.parameters.0.type", "emoji"), 1009),
    "template parameter object missing": (
        _replace(TEMPLATE, "template.components.1.parameters.0", {"type": "text"}),
        1008,
    ),
    "template parameter with another object": (
        _replace(TEMPLATE, "template.components.1.parameters.0.payload", "p"),
        1010,
    ),
    "template body takes no image": (
        _replace(TEMPLATE, "template.components.1.parameters.0", {"type": "image", "image": {"id": "i"}}),
        1009,
    ),
    "template currency without code": (
        _replace(TEMPLATE, "template.components.1.parameters.1.currency.code", ...),
        1008,
    ),
    "template currency amount a string": (
        _replace(TEMPLATE, "template.components.1.parameters.1.currency.amount_1000", "1000"),
        1009,
    ),
    "template date_time without fallback": (
        _replace(TEMPLATE, "template.components.1.parameters.2.date_time.fallback_value", ...),
        1008,
    ),
    "template date_time bad month": (
        _replace(TEMPLATE, "template.components.1.parameters.2.date_time.month", 13),
        1009,
    ),
    "template button without sub_type": (_replace(TEMPLATE, "template.components.2.sub_type", ...), 1008),
    "template button without index": (_replace(TEMPLATE, "template.components.2.index", ...), 1008),
    "template button bad sub_type": (_replace(TEMPLATE, "template.components.2.sub_type", "call"), 1009),
    "template button bad index": (_replace(TEMPLATE, "template.components.2.index", "ten"), 1009),
    "template quick_reply with text": (
        _replace(TEMPLATE, "template.components.2.parameters.0", {"type": "text", "text": "t"}),
        1009,
    ),
    "template duplicate button index": (_replace(TEMPLATE, "template.components.3.index", "0"), 1009),
    "template sub_type on body": (_replace(TEMPLATE, "template.components.1.sub_type", "url"), 1010),
    "template two bodies": (
        _replace(TEMPLATE, "template.components.0", {"type": "body", "parameters": []}),
        1009,
    ),
    "template parameter too long": (_replace(TEMPLATE, "template.components.1.parameters.0.text", "x" * 1025), 2004),
    "template stray key": (_replace(TEMPLATE, "template.element_name", "x"), 1010),
    # hsm
    "hsm namespace empty": (_replace(HSM, "hsm.namespace", " "), 2014),
    "hsm element_name missing": (_replace(HSM, "hsm.element_name", ...), 1008),
    "hsm param without default": (_replace(HSM, "hsm.localizable_params.0", {}), 1008),
    "hsm param currency and date_time": (
        _replace(HSM, "hsm.localizable_params.1.date_time", {"unix_epoch": {"timestamp": 1}}),
        1009,
    ),
    "hsm date_time empty": (_replace(HSM, "hsm.localizable_params.2.date_time", {}), 1008),
    "hsm bad day_of_week": (_replace(HSM, "hsm.localizable_params.2.date_time.component.day_of_week", 8), 1009),
    "hsm stray key": (_replace(HSM, "hsm.components", []), 1010),
    # reaction
    "reaction message_id missing": (_replace(REACTION, "reaction.message_id", ...), 1008),
    "reaction emoji missing": (_replace(REACTION, "reaction.emoji", ...), 1008),
    "reaction emoji is text": (_replace(REACTION, "reaction.emoji", "like"), 1009),
    "reaction emoji too long": (_replace(REACTION, "reaction.emoji", "👍" * 17), 1009),
    "reaction emoji with space": (_replace(REACTION, "reaction.emoji", "👍 👍"), 1009),
    "reaction stray key": (_replace(REACTION, "reaction.from", "x"), 1010),
}


@pytest.mark.parametrize(("payload", "code"), list(INVALID.values()), ids=list(INVALID))
async def test_invalid_messages(admin: Api, core: FakeCore, payload: dict[str, Any], code: int) -> None:
    status, body = await send(admin, payload)
    assert (status, body["errors"][0]["code"]) == (400, code), body
    assert body["errors"][0]["details"]
    assert not [c for c in core.calls if c[0] == "messages.send"]


async def test_error_details_name_the_field(admin: Api) -> None:
    _, body = await send(admin, listing([{"title": "A", "rows": []}]))
    assert body["errors"][0]["details"].startswith("interactive.action.sections[0].rows:")
    _, body = await send(admin, _replace(TEMPLATE, "template.components.1.parameters.0", {"type": "text"}))
    assert body["errors"][0]["details"].startswith("template.components[1].parameters[0]:")


async def test_mark_read(admin: Api, core: FakeCore) -> None:
    status, body, _ = await admin.call("PUT", "/v1/messages/ABGGFlA5FpafAgo6tHcNmNjXmuSf", {"status": "read"})
    assert status == 200, body
    assert set(body) == {"meta"}
    assert core.last("messages.mark_read") == {"id": "ABGGFlA5FpafAgo6tHcNmNjXmuSf"}


@pytest.mark.parametrize(
    ("message_id", "payload", "status", "code"),
    [
        ("ABGGFlA5FpafAgo6tHcNmNjXmuSf", {"status": "delivered"}, 400, 1009),
        ("ABGGFlA5FpafAgo6tHcNmNjXmuSf", {}, 400, 1008),
        ("ABGGFlA5FpafAgo6tHcNmNjXmuSf", {"status": "read", "at": 1}, 400, 1010),
        ("unknown", {"status": "read"}, 404, 1006),
        ("out-1", {"status": "read"}, 400, 1009),
        ("x" * 129, {"status": "read"}, 404, 1006),
    ],
)
async def test_mark_read_errors(admin: Api, message_id: str, payload: Any, status: int, code: int) -> None:
    got, body, _ = await admin.call("PUT", f"/v1/messages/{message_id}", payload)
    assert (got, body["errors"][0]["code"]) == (status, code), body


async def test_mark_read_when_coreapp_not_ready(admin: Api, core: FakeCore) -> None:
    core.errors["messages.mark_read"] = ApiError(ErrorCode.NOT_READY)
    status, body, _ = await admin.call("PUT", "/v1/messages/ABGGFlA5FpafAgo6tHcNmNjXmuSf", {"status": "read"})
    assert (status, body["errors"][0]["code"]) == (503, 1011)
