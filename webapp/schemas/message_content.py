"""Location, contacts and reaction messages (reference §2.6).

The contacts card follows the documented shape key by key; its ``type`` enums are matched without regard to
case (the docs write them upper case, SDKs often lower case) and kept as sent.  ``ims`` is only ever shown
empty in the sources, so its entries are free-form objects.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from shared.errors import ErrorCode
from webapp.schemas.base import RequestModel, onprem_error
from webapp.schemas.message_base import MessageBase, limit, require_text

MAX_FIELD_LENGTH = 1024
"""A generous cap for free-text card and location fields (the sources give none)."""
MAX_CONTACTS = 257
"""The Cloud API's cap on cards per message; the reference is silent."""
MAX_EMOJI_LENGTH = 16
"""Code points: enough for the longest ZWJ sequences (families, flags with tags), short of a sentence."""


def _enum(value: str, allowed: frozenset[str]) -> str:
    if value.upper() not in allowed:
        raise onprem_error(ErrorCode.INVALID_PARAMETER, "must be one of " + ", ".join(sorted(allowed)))
    return value


def _short(value: str) -> str:
    return limit(value, MAX_FIELD_LENGTH)


ShortText = Annotated[str, AfterValidator(_short)]


_HOME_WORK = frozenset({"HOME", "WORK"})
_PHONE_TYPES = frozenset({"CELL", "MAIN", "IPHONE", "HOME", "WORK"})


class Location(RequestModel):
    longitude: float = Field(ge=-180, le=180)
    latitude: float = Field(ge=-90, le=90)
    name: ShortText | None = None
    address: ShortText | None = None


class LocationMessage(MessageBase):
    type: Literal["location"]
    location: Location


class Address(RequestModel):
    street: ShortText | None = None
    city: ShortText | None = None
    state: ShortText | None = None
    zip: ShortText | None = None
    country: ShortText | None = None
    country_code: ShortText | None = None
    type: str | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _enum(value, _HOME_WORK)


class Email(RequestModel):
    email: str | None = None
    type: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an e-mail address")
        return limit(value, 320)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _enum(value, _HOME_WORK)


class Name(RequestModel):
    formatted_name: str
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    middle_name: ShortText | None = None
    prefix: ShortText | None = None
    suffix: ShortText | None = None

    @field_validator("formatted_name")
    @classmethod
    def _formatted(cls, value: str) -> str:
        return require_text(value, MAX_FIELD_LENGTH)


class Org(RequestModel):
    company: ShortText | None = None
    department: ShortText | None = None
    title: ShortText | None = None


class Phone(RequestModel):
    phone: str | None = None
    type: str | None = None
    wa_id: str | None = None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return require_text(value, 64)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _enum(value, _PHONE_TYPES)

    @field_validator("wa_id")
    @classmethod
    def _wa_id(cls, value: str) -> str:
        if not value.isdigit() or len(value) > 20:
            raise ValueError("must be a wa_id (digits only)")
        return value


class Url(RequestModel):
    url: str | None = None
    type: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return require_text(value, 2048)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return _enum(value, _HOME_WORK)


class Contact(RequestModel):
    name: Name
    addresses: list[Address] | None = None
    birthday: str | None = None
    emails: list[Email] | None = None
    ims: list[dict[str, Any]] | None = None
    org: Org | None = None
    phones: list[Phone] | None = None
    urls: list[Url] | None = None

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, value: str) -> str:
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date as YYYY-MM-DD") from None
        if len(value) != len("YYYY-MM-DD"):
            raise ValueError("must be a date as YYYY-MM-DD")
        return value


class ContactsMessage(MessageBase):
    type: Literal["contacts"]
    contacts: list[Contact]

    @field_validator("contacts")
    @classmethod
    def _count(cls, value: list[Contact]) -> list[Contact]:
        if not value:
            raise ValueError("must hold at least one contact")
        if len(value) > MAX_CONTACTS:
            raise ValueError(f"must hold at most {MAX_CONTACTS} contacts")
        return value


class Reaction(RequestModel):
    """``emoji`` empty removes the business's earlier reaction to ``message_id``."""

    message_id: str
    emoji: str

    @field_validator("message_id")
    @classmethod
    def _message_id(cls, value: str) -> str:
        return require_text(value, 128)

    @field_validator("emoji")
    @classmethod
    def _emoji(cls, value: str) -> str:
        if value and (not value.strip() or any(ch.isspace() for ch in value)):
            raise ValueError("must be a single emoji, or empty to remove the reaction")
        if value.isascii() and value:
            raise ValueError("must be an emoji, not text")
        return limit(value, MAX_EMOJI_LENGTH)


class ReactionMessage(MessageBase):
    type: Literal["reaction"]
    reaction: Reaction
