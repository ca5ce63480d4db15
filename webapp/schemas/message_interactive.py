"""Interactive messages: reply buttons and lists (reference §2.6).

The reference gives the list rules (1 to 10 sections → 2015, at least one row each → 2016) and the button rules
(at most 3, titles ≤ 20); the other limits are the Cloud API's, which the reference says these match.  A body
over its limit is 1001 (as for text); every other limit is a bad value (1009).  Each interactive ``type`` has
its own message model so an error names ``interactive.action.sections`` rather than a union branch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from shared.errors import ErrorCode
from webapp.schemas.base import RequestModel, onprem_error
from webapp.schemas.message_base import MessageBase, limit, only_given, require_text
from webapp.schemas.message_media import CaptionedMedia, DocumentMedia

MAX_BODY_LENGTH = 1024
MAX_HEADER_TEXT_LENGTH = 60
MAX_FOOTER_LENGTH = 60
MAX_BUTTONS = 3
MAX_BUTTON_TITLE_LENGTH = 20
MAX_BUTTON_ID_LENGTH = 256
MAX_LIST_BUTTON_LENGTH = 20
MAX_SECTIONS = 10
MAX_ROWS = 10
"""Rows over all sections of one list."""
MAX_SECTION_TITLE_LENGTH = 24
MAX_ROW_TITLE_LENGTH = 24
MAX_ROW_DESCRIPTION_LENGTH = 72
MAX_ROW_ID_LENGTH = 200
INTERACTIVE_TYPES = ("button", "list", "product", "product_list")
"""Every ``interactive.type``; the product ones are modelled in ``webapp.schemas.message_products``."""

_HEADER_FIELDS = ("text", "image", "video", "document")


class Header(RequestModel):
    type: Literal["text", "image", "video", "document"]
    text: str | None = None
    image: CaptionedMedia | None = None
    video: CaptionedMedia | None = None
    document: DocumentMedia | None = None

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return require_text(value, MAX_HEADER_TEXT_LENGTH)

    @model_validator(mode="after")
    def _matches_type(self) -> Header:
        only_given(self, self.type, _HEADER_FIELDS, "header")
        return self


class Body(RequestModel):
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return require_text(value, MAX_BODY_LENGTH, ErrorCode.MESSAGE_TOO_LONG)


class Footer(RequestModel):
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return require_text(value, MAX_FOOTER_LENGTH)


class Reply(RequestModel):
    id: str
    title: str

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return require_text(value, MAX_BUTTON_ID_LENGTH)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return require_text(value, MAX_BUTTON_TITLE_LENGTH)


class ReplyButton(RequestModel):
    type: Literal["reply"]
    reply: Reply


class ButtonAction(RequestModel):
    buttons: list[ReplyButton]

    @field_validator("buttons")
    @classmethod
    def _buttons(cls, value: list[ReplyButton]) -> list[ReplyButton]:
        if not 1 <= len(value) <= MAX_BUTTONS:
            raise ValueError(f"must hold 1 to {MAX_BUTTONS} buttons")
        ids = [button.reply.id for button in value]
        if len(set(ids)) != len(ids):
            raise ValueError("button ids must be unique")
        return value


class ButtonInteractive(RequestModel):
    type: Literal["button"]
    header: Header | None = None
    body: Body
    footer: Footer | None = None
    action: ButtonAction


class Row(RequestModel):
    id: str
    title: str
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return require_text(value, MAX_ROW_ID_LENGTH)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return require_text(value, MAX_ROW_TITLE_LENGTH)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return limit(value, MAX_ROW_DESCRIPTION_LENGTH)


class Section(RequestModel):
    title: str | None = None
    rows: list[Row]

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return require_text(value, MAX_SECTION_TITLE_LENGTH)

    @field_validator("rows")
    @classmethod
    def _rows(cls, value: list[Row]) -> list[Row]:
        if not value:
            raise onprem_error(ErrorCode.INVALID_ROWS, "a section needs at least one row")
        return value


class ListAction(RequestModel):
    button: str
    sections: list[Section]

    @field_validator("button")
    @classmethod
    def _button(cls, value: str) -> str:
        return require_text(value, MAX_LIST_BUTTON_LENGTH)

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: list[Section]) -> list[Section]:
        if not 1 <= len(value) <= MAX_SECTIONS:
            raise onprem_error(ErrorCode.INVALID_SECTIONS, f"a list needs 1 to {MAX_SECTIONS} sections")
        rows = [row for section in value for row in section.rows]
        if len(rows) > MAX_ROWS:
            raise onprem_error(ErrorCode.INVALID_ROWS, f"a list holds at most {MAX_ROWS} rows over all sections")
        ids = [row.id for row in rows]
        if len(set(ids)) != len(ids):
            raise ValueError("row ids must be unique over all sections")
        if len(value) > 1 and any(section.title is None for section in value):
            raise onprem_error(ErrorCode.MISSING_PARAMETER, "every section needs a title when there are several")
        return value


class ListHeader(RequestModel):
    """Lists only take a text header."""

    type: Literal["text"]
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        return require_text(value, MAX_HEADER_TEXT_LENGTH)


class ListInteractive(RequestModel):
    type: Literal["list"]
    header: ListHeader | None = None
    body: Body
    footer: Footer | None = None
    action: ListAction


class InteractiveButtonMessage(MessageBase):
    type: Literal["interactive"]
    interactive: ButtonInteractive


class InteractiveListMessage(MessageBase):
    type: Literal["interactive"]
    interactive: ListInteractive
