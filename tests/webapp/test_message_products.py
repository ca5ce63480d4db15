"""``POST /v1/messages`` with interactive ``product`` and ``product_list`` (reference §2.6): what passes reaches
coreapp unchanged, every limit answers its code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from shared.config import DbSettings
from tests.support.services import db_settings_for
from tests.webapp.conftest import Api, FakeCore
from tests.webapp.test_message_types import _replace, msg, send
from webapp.schemas.messages import OutboundMessage


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


def product(**extra: Any) -> dict[str, Any]:
    action = {"catalog_id": "367025965434465", "product_retailer_id": "SKU-1"}
    return msg("interactive", {"type": "product", "action": action, **extra})


def items(count: int, prefix: str = "p") -> list[dict[str, str]]:
    return [{"product_retailer_id": f"{prefix}{i}"} for i in range(count)]


def product_list(sections: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    if sections is None:
        sections = [{"title": "Tea", "product_items": items(2)}]
    interactive = {
        "type": "product_list",
        "header": {"type": "text", "text": "Our menu"},
        "body": {"text": "Pick what you like"},
        "action": {"catalog_id": "367025965434465", "sections": sections},
        **extra,
    }
    return msg("interactive", interactive)


VALID = {
    "product": product(),
    "product with body and footer": product(body={"text": "Fresh today"}, footer={"text": "Prices incl. tax"}),
    "product list": product_list(footer={"text": "Thanks"}),
    "product list of 30 in 10 sections": product_list(
        [{"title": f"S{i}", "product_items": items(3, f"s{i}-")} for i in range(10)]
    ),
    "product list one untitled section": product_list([{"product_items": items(1)}]),
}

PRODUCT, LIST = VALID["product"], VALID["product list"]
INVALID: dict[str, tuple[dict[str, Any], int]] = {
    "product catalog missing": (_replace(PRODUCT, "interactive.action.catalog_id", ...), 1008),
    "product retailer id missing": (_replace(PRODUCT, "interactive.action.product_retailer_id", ...), 1008),
    "product retailer id empty": (_replace(PRODUCT, "interactive.action.product_retailer_id", " "), 1009),
    "product retailer id too long": (_replace(PRODUCT, "interactive.action.product_retailer_id", "x" * 101), 1009),
    "product catalog a number": (_replace(PRODUCT, "interactive.action.catalog_id", 367025965434465), 1009),
    "product header": (product(header={"type": "text", "text": "Hi"}), 1010),
    "product sections": (_replace(PRODUCT, "interactive.action.sections", []), 1010),
    "product body too long": (product(body={"text": "x" * 1025}), 1001),
    "product footer too long": (product(footer={"text": "x" * 61}), 1009),
    "list header missing": (_replace(LIST, "interactive.header", ...), 1008),
    "list body missing": (_replace(LIST, "interactive.body", ...), 1008),
    "list image header": (_replace(LIST, "interactive.header", {"type": "image", "image": {"id": "i"}}), 1009),
    "list catalog missing": (_replace(LIST, "interactive.action.catalog_id", ...), 1008),
    "list sections missing": (_replace(LIST, "interactive.action.sections", ...), 1008),
    "list no sections": (product_list([]), 2015),
    "list 11 sections": (
        product_list([{"title": f"S{i}", "product_items": items(1, f"{i}")} for i in range(11)]),
        2015,
    ),
    "list 31 products": (
        product_list(
            [{"title": "A", "product_items": items(16, "a")}, {"title": "B", "product_items": items(15, "b")}]
        ),
        2023,
    ),
    "list empty section": (product_list([{"title": "A", "product_items": []}]), 2023),
    "list untitled section among several": (
        product_list([{"title": "A", "product_items": items(1, "a")}, {"product_items": items(1, "b")}]),
        1008,
    ),
    "list section title too long": (product_list([{"title": "x" * 25, "product_items": items(1)}]), 1009),
    "list item without id": (product_list([{"title": "A", "product_items": [{}]}]), 1008),
    "list item stray key": (
        product_list([{"title": "A", "product_items": [{"product_retailer_id": "p", "qty": 1}]}]),
        1010,
    ),
    "list rows instead of items": (product_list([{"title": "A", "rows": [{"id": "r", "title": "t"}]}]), 1008),
}


@pytest.mark.parametrize("payload", list(VALID.values()), ids=list(VALID))
async def test_valid_product_messages_reach_coreapp(admin: Api, core: FakeCore, payload: dict[str, Any]) -> None:
    status, body = await send(admin, payload)
    assert status == 201, body
    sent = core.last("messages.send")
    assert (sent["type"], sent["interactive"]) == ("interactive", payload["interactive"])
    TypeAdapter(OutboundMessage).validate_python(payload)


@pytest.mark.parametrize(("payload", "code"), list(INVALID.values()), ids=list(INVALID))
async def test_invalid_product_messages(admin: Api, core: FakeCore, payload: dict[str, Any], code: int) -> None:
    status, body = await send(admin, payload)
    assert (status, body["errors"][0]["code"]) == (400, code), body
    assert body["errors"][0]["details"]
    assert not [c for c in core.calls if c[0] == "messages.send"]


async def test_unknown_interactive_type_names_the_product_types(admin: Api) -> None:
    _, body = await send(admin, msg("interactive", {"type": "catalog_message", "body": {"text": "x"}}))
    assert body["errors"][0]["details"] == "interactive.type: must be one of button, list, product, product_list"
