"""Interactive product messages: one product (``product``) and several (``product_list``) from a catalog
(reference §2.6: single- and multi-product messages, at most 30 items).

The shapes and the other limits are the Cloud API's, which the reference says these match: a single product takes
an optional body and footer (no header); a product list needs a text header and a body, 1 to 10 sections (2015)
and 1 to 30 products over all of them (2023), each section holding at least one (2023) and, when there are
several, a title.  Catalogs are the business's own (Commerce Manager): OpenPrem cannot check that an id exists
there, so ``catalog_id`` and the retailer ids are only checked for shape; the phone receives them as sent.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from shared.errors import ErrorCode
from webapp.schemas.base import RequestModel, onprem_error
from webapp.schemas.message_base import MessageBase, require_text
from webapp.schemas.message_interactive import Body, Footer, ListHeader

MAX_PRODUCT_SECTIONS = 10
MAX_PRODUCTS = 30
"""Products over all sections of one ``product_list``."""
MAX_PRODUCT_SECTION_TITLE_LENGTH = 24
MAX_CATALOG_ID_LENGTH = 128
MAX_RETAILER_ID_LENGTH = 100
PRODUCT_TYPES = ("product", "product_list")


class ProductAction(RequestModel):
    catalog_id: str
    product_retailer_id: str

    @field_validator("catalog_id")
    @classmethod
    def _catalog_id(cls, value: str) -> str:
        return require_text(value, MAX_CATALOG_ID_LENGTH)

    @field_validator("product_retailer_id")
    @classmethod
    def _retailer_id(cls, value: str) -> str:
        return require_text(value, MAX_RETAILER_ID_LENGTH)


class ProductInteractive(RequestModel):
    type: Literal["product"]
    body: Body | None = None
    footer: Footer | None = None
    action: ProductAction


class ProductItem(RequestModel):
    product_retailer_id: str

    @field_validator("product_retailer_id")
    @classmethod
    def _retailer_id(cls, value: str) -> str:
        return require_text(value, MAX_RETAILER_ID_LENGTH)


class ProductSection(RequestModel):
    title: str | None = None
    product_items: list[ProductItem]

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return require_text(value, MAX_PRODUCT_SECTION_TITLE_LENGTH)

    @field_validator("product_items")
    @classmethod
    def _items(cls, value: list[ProductItem]) -> list[ProductItem]:
        if not value:
            raise onprem_error(ErrorCode.INVALID_PRODUCT_COUNT, "a section needs at least one product")
        return value


class ProductListAction(RequestModel):
    catalog_id: str
    sections: list[ProductSection]

    @field_validator("catalog_id")
    @classmethod
    def _catalog_id(cls, value: str) -> str:
        return require_text(value, MAX_CATALOG_ID_LENGTH)

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: list[ProductSection]) -> list[ProductSection]:
        if not 1 <= len(value) <= MAX_PRODUCT_SECTIONS:
            message = f"a product list needs 1 to {MAX_PRODUCT_SECTIONS} sections"
            raise onprem_error(ErrorCode.INVALID_SECTIONS, message)
        if sum(len(section.product_items) for section in value) > MAX_PRODUCTS:
            message = f"a product list holds at most {MAX_PRODUCTS} products over all sections"
            raise onprem_error(ErrorCode.INVALID_PRODUCT_COUNT, message)
        if len(value) > 1 and any(section.title is None for section in value):
            raise onprem_error(ErrorCode.MISSING_PARAMETER, "every section needs a title when there are several")
        return value


class ProductListInteractive(RequestModel):
    type: Literal["product_list"]
    header: ListHeader
    body: Body
    footer: Footer | None = None
    action: ProductListAction


class InteractiveProductMessage(MessageBase):
    type: Literal["interactive"]
    interactive: ProductInteractive


class InteractiveProductListMessage(MessageBase):
    type: Literal["interactive"]
    interactive: ProductListInteractive
