"""Every non-media message type end to end (coreapp + chatd + a real database on each backend): the phone
decrypts exactly the On-Prem object that was sent; template checks against the synced cache; mark as read."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import pytest
from sqlalchemy import select

from coreapp.services.compose import MessageComposer
from coreapp.storage.tables import messages
from coreapp.storage.templates import TemplateStore
from shared.bus.contract.messages import SendMessage
from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register

NS = "openprem_demo"
TEMPLATES = [  # created before login, so the sync at login brings them
    {"name": "order_update", "language": "pt_BR", "components": [{"type": "BODY", "text": "Pedido {{1}} em {{2}}"}]},
    {"name": "paused_one", "language": "en_US", "status": "paused", "components": [{"type": "BODY", "text": "x"}]},
    {"name": "pending_one", "language": "en_US", "status": "pending", "components": [{"type": "BODY", "text": "x"}]},
    {"name": "no_body", "language": "en", "components": [{"type": "HEADER", "format": "TEXT", "text": "Hi"}]},
]


def template(name: str = "order_update", code: str = "en_US", params: int = 2, policy: str = "deterministic"):
    values = [{"type": "text", "text": "A-17"}, {"type": "date_time", "date_time": {"fallback_value": "May 5"}}]
    values += [{"type": "text", "text": f"extra {i}"} for i in range(max(0, params - 2))]
    return {
        "namespace": NS,
        "name": name,
        "language": {"policy": policy, "code": code},
        "components": [{"type": "body", "parameters": values[:params]}],
    }


def hsm(params: int = 2, name: str = "order_update") -> dict[str, Any]:
    return {
        "namespace": NS,
        "element_name": name,
        "language": {"policy": "deterministic", "code": "en_US"},
        "localizable_params": [{"default": "Kerry"}, {"default": "A-17"}][:params],
    }


CONTENTS: list[dict[str, Any]] = [
    {"type": "location", "location": {"longitude": -122.425, "latitude": 37.758, "name": "Home", "address": "1 Rd"}},
    {
        "type": "contacts",
        "contacts": [
            {
                "name": {"formatted_name": "Kerry Fisher", "first_name": "Kerry"},
                "phones": [{"phone": "+1 650 555 1234", "type": "CELL", "wa_id": "16505551234"}],
                "emails": [{"email": "kerry@example.com", "type": "WORK"}],
                "birthday": "2012-08-18",
            }
        ],
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "header": {"type": "text", "text": "Delivery"},
            "body": {"text": "When should we come?"},
            "footer": {"text": "Reply below"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "am", "title": "Morning"}}]},
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Menu"},
            "action": {
                "button": "Choose",
                "sections": [
                    {"title": "Mains", "rows": [{"id": "r1", "title": "Pasta", "description": "Tomato"}]},
                    {"title": "Drinks", "rows": [{"id": "r2", "title": "Water"}]},
                ],
            },
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "product",
            "body": {"text": "Fresh today"},
            "action": {"catalog_id": "367025965434465", "product_retailer_id": "SKU-1"},
        },
    },
    {
        "type": "interactive",
        "interactive": {
            "type": "product_list",
            "header": {"type": "text", "text": "Our menu"},
            "body": {"text": "Pick what you like"},
            "footer": {"text": "Thanks"},
            "action": {
                "catalog_id": "367025965434465",
                "sections": [
                    {"title": "Tea", "product_items": [{"product_retailer_id": "t1"}, {"product_retailer_id": "t2"}]},
                    {"title": "Cake", "product_items": [{"product_retailer_id": "c1"}]},
                ],
            },
        },
    },
    {"type": "template", "template": template()},
    {"type": "template", "template": template(name="hello_world", params=0)},
    {"type": "hsm", "hsm": hsm()},
    {"type": "reaction", "reaction": {"message_id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU", "emoji": "👍"}},
    {"type": "reaction", "reaction": {"message_id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU", "emoji": ""}},
]


async def _ready_core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    for body in TEMPLATES:
        await sandbox.admin("POST", "/admin/templates", {"namespace": NS, **body})
    core = await make_core(db)
    await register(core, sandbox)
    return core


async def _send(core: Core, content: dict[str, Any]) -> str:
    return str((await core.rpc("messages.send", {"to": PHONE, "recipient_type": "individual", **content}))["id"])


async def _inbox(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]}


async def _error(core: Core, content: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        await _send(core, content)
    return info.value


async def test_every_type_arrives_as_sent(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    ids = [await _send(core, content) for content in CONTENTS]

    async def all_arrived() -> dict[str, dict[str, Any]] | None:
        inbox = await _inbox(sandbox)
        return inbox if all(i in inbox for i in ids) else None

    inbox = await eventually(all_arrived)
    for message_id, content in zip(ids, CONTENTS, strict=True):
        received = dict(inbox[message_id])
        assert (received.pop("id"), received.pop("from")) == (message_id, BUSINESS_WA_ID)
        received.pop("timestamp"), received.pop("device_id")
        assert received == content
    async with core.app.db.engine.connect() as conn:
        rows = {r.id: r.type for r in await conn.execute(select(messages.c.id, messages.c.type))}
    assert [rows[i] for i in ids] == [c["type"] for c in CONTENTS]


async def test_template_checks(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)

    err = await _error(core, {"type": "template", "template": template(name="no_such_template")})
    assert err.code is ErrorCode.TEMPLATE_MISSING
    assert err.details == "Template no_such_template does not exist in en and locale US (namespace openprem_demo)"
    err = await _error(core, {"type": "template", "template": template(code="de")})
    assert (err.code, err.details) == (
        ErrorCode.TEMPLATE_MISSING,
        "Template order_update does not exist in de (namespace openprem_demo)",
    )
    wrong_ns = {**template(), "namespace": "someone_else"}
    assert (await _error(core, {"type": "template", "template": wrong_ns})).code is ErrorCode.TEMPLATE_MISSING
    # deterministic means this exact language; fallback may take another locale of it
    err = await _error(core, {"type": "template", "template": template(code="pt_PT")})
    assert err.code is ErrorCode.TEMPLATE_MISSING
    assert await _send(core, {"type": "template", "template": template(code="pt_PT", policy="fallback")})
    assert await _send(core, {"type": "template", "template": template(code="en", policy="fallback")})
    # not approved
    assert (await _error(core, {"type": "template", "template": template("pending_one", params=0)})).code is (
        ErrorCode.TEMPLATE_MISSING
    )
    err = await _error(core, {"type": "template", "template": template("paused_one", params=0)})
    assert err.code is ErrorCode.TEMPLATE_PAUSED
    # parameter count: the body of order_update has two placeholders
    for count in (0, 1, 3):
        err = await _error(core, {"type": "template", "template": template(params=count)})
        assert (err.code, err.details) == (
            ErrorCode.TEMPLATE_PARAM_COUNT,
            f"Number of localizable_params ({count}) does not match the expected number of params (2)",
        )
    err = await _error(core, {"type": "template", "template": template("no_body", code="en", params=1)})
    assert err.code is ErrorCode.TEMPLATE_PARAM_COUNT
    # hsm goes through the same checks
    err = await _error(core, {"type": "hsm", "hsm": hsm(params=1)})
    assert (err.code, err.details) == (
        ErrorCode.TEMPLATE_PARAM_COUNT,
        "Number of localizable_params (1) does not match the expected number of params (2)",
    )
    assert (await _error(core, {"type": "hsm", "hsm": hsm(name="nope")})).code is ErrorCode.TEMPLATE_MISSING
    assert err.code.http_status == 400
    assert ErrorCode.TEMPLATE_MISSING.http_status == 404
    # a hydrated body longer than 1024 characters cannot be sent
    long_values = template()
    long_values["components"][0]["parameters"][0]["text"] = "x" * 1020
    err = await _error(core, {"type": "template", "template": long_values})
    assert err.code is ErrorCode.TEMPLATE_TEXT_TOO_LONG


class FakeMedia:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def prepare_outbound(self, message_type: str, media: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((message_type, media))
        return {"url": "https://media.example/x", "media_key": "k", "caption": media.get("caption")}


def _request(body: dict[str, Any]) -> SendMessage:
    return msgspec.convert({"to": PHONE, **body}, SendMessage)


async def test_media_goes_through_the_media_service() -> None:
    image = {"type": "image", "image": {"id": "f043afd0", "caption": "cat"}}
    media = FakeMedia()
    composer = MessageComposer(cast(TemplateStore, None), media)
    assert await composer.compose(_request(image)) == {
        "type": "image",
        "image": {"url": "https://media.example/x", "media_key": "k", "caption": "cat"},
    }
    header = {"type": "document", "document": {"link": "https://example.com/a.pdf", "filename": "a.pdf"}}
    interactive = {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "header": header,
            "body": {"text": "b"},
            "action": {"buttons": [{"type": "reply", "reply": {"id": "1", "title": "t"}}]},
        },
    }
    content = await composer.compose(_request(interactive))
    assert content["interactive"]["header"]["document"]["url"] == "https://media.example/x"
    assert media.calls[-1] == ("document", header["document"])


async def _status(core: Core, message_id: str) -> str | None:
    async with core.app.db.engine.connect() as conn:
        return await conn.scalar(select(messages.c.status).where(messages.c.id == message_id))


async def test_mark_read(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    inbound = (
        await sandbox.admin(
            "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "hi"}}
        )
    )["id"]

    async def stored() -> bool:
        return await _status(core, inbound) == "received"

    await eventually(stored)
    sent = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/sent"))["messages"]
    assert [(m["id"], m["read_by_business"]) for m in sent] == [(inbound, False)]

    assert await core.rpc("messages.mark_read", {"id": inbound}) == {}
    assert await _status(core, inbound) == "read"
    (entry,) = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/sent"))["messages"]
    assert (entry["id"], entry["to"], entry["type"], entry["read_by_business"]) == (
        inbound,
        BUSINESS_WA_ID,
        "text",
        True,
    )
    assert isinstance(entry["read_at"], int)
    assert await core.rpc("messages.mark_read", {"id": inbound}) == {}  # again: harmless

    with pytest.raises(ApiError) as info:
        await core.rpc("messages.mark_read", {"id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU"})
    assert info.value.code is ErrorCode.NOT_FOUND
    outbound = await _send(core, {"type": "text", "text": {"body": "hello"}})
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.mark_read", {"id": outbound})
    assert info.value.code is ErrorCode.INVALID_PARAMETER


async def test_mark_read_before_ready(sandbox: Sandbox, make_core: CoreFactory, sqlite_db: DbSettings) -> None:
    core = await make_core(sqlite_db)  # never registered
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.mark_read", {"id": "gBEGkYiEB1VXAglK1ZEqA1YKPrU"})
    assert info.value.code is ErrorCode.NOT_READY
