"""Profile, business profile and media provider documents: one model each, shared by webapp and coreapp.

webapp validates request bodies against these (so the client gets 1008/1009/1010), coreapp validates again
before storing (the bus is a trust boundary too) and keeps the value exactly as posted, so readers of the
``settings`` rows (media downloads read ``media_providers``) see the On-Prem shapes.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.errors import ErrorCode

ABOUT_MAX = 139
PHOTO_MAX_BYTES = 5 * 1024 * 1024
PHOTO_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
"""Accepted photo content types and the magic bytes their bodies must start with."""
SECRET_MASK = "****"

# Settings row names (``SettingsStore.get/put``).
ROW_MEDIA_PROVIDERS = "media_providers"
ROW_ABOUT = "profile_about"
ROW_PHOTO = "profile_photo"
ROW_BUSINESS_PROFILE = "business_profile"
ROW_WEBHOOKS_CA = "webhooks_ca"
ROW_COMPLIANCE_INFO = "business_compliance_info"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class About(_Strict):
    text: str = Field(max_length=ABOUT_MAX)


class BusinessProfile(_Strict):
    """Reference §2.9.  Every field optional: a POST sets the fields it names and leaves the others."""

    address: str = Field(default="", max_length=256)
    description: str = Field(default="", max_length=256)
    email: str = Field(default="", max_length=128)
    vertical: str = Field(default="", max_length=128)
    websites: list[str] = Field(default_factory=list, max_length=2)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @field_validator("websites")
    @classmethod
    def _websites(cls, value: list[str]) -> list[str]:
        for site in value:
            if len(site) > 256:
                raise ValueError("each website is at most 256 characters")
            try:
                parts = urlsplit(site)
            except ValueError:
                raise ValueError(f"{site!r} is not a URL") from None
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{site!r} must be an absolute http:// or https:// URL")
        return value


COMPLIANCE_ENTITY_TYPES = (
    "LIMITED_LIABILITY_PARTNERSHIP",
    "SOLE_PROPRIETORSHIP",
    "PARTNERSHIP",
    "PUBLIC_COMPANY",
    "PRIVATE_COMPANY",
    "OTHER",
)
EntityType = Literal[
    "LIMITED_LIABILITY_PARTNERSHIP", "SOLE_PROPRIETORSHIP", "PARTNERSHIP", "PUBLIC_COMPANY", "PRIVATE_COMPANY", "OTHER"
]
_ENTITY_TYPE_ALIASES = {
    "LLP": "LIMITED_LIABILITY_PARTNERSHIP",
    **{name.replace("_", " "): name for name in COMPLIANCE_ENTITY_TYPES if "_" in name},
}
"""Spellings of the same types seen in the docs and in BSP guides ("LIMITED LIABILITY PARTNERSHIP", "LLP")."""
REGISTRATION_ASKED = frozenset({"PARTNERSHIP", "OTHER"})
"""The types for which ``is_registered`` must be given; the others are registered by definition."""
PHONE_NUMBER_PATTERN = r"^\+[0-9]{6,15}$"
"""With the country code and its ``+`` (e.g. ``+911234567890``), digits only."""


def _missing(message: str) -> PydanticCustomError:
    """A conditionally required field left out: 1008, not 1009 (``onprem_<code>`` is how webapp's envelope reads a
    validator's own code; coreapp answers 1009 for any document that fails on arrival)."""
    return PydanticCustomError(f"onprem_{ErrorCode.MISSING_PARAMETER.code}", message)


class _ContactDetails(_Strict):
    email: str = Field(max_length=128)
    landline_number: str | None = Field(default=None, pattern=PHONE_NUMBER_PATTERN)
    mobile_number: str | None = Field(default=None, pattern=PHONE_NUMBER_PATTERN)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("not an email address")
        return value

    @model_validator(mode="after")
    def _a_number(self) -> _ContactDetails:
        if self.landline_number is None and self.mobile_number is None:
            raise _missing("needs a landline_number or a mobile_number")
        return self


class CustomerCareDetails(_ContactDetails):
    """How customers reach the business."""


class GrievanceOfficerDetails(_ContactDetails):
    """Who resolves customers' complaints."""

    name: str = Field(min_length=1, max_length=256)


class ComplianceInfo(_Strict):
    """``/v1/settings/business/compliance_info``: the legal entity details WhatsApp shows to customers in India.

    A POST replaces the whole document.  ``entity_type_custom`` names the type when it is ``OTHER`` (required
    then, empty otherwise); ``is_registered`` is required for ``PARTNERSHIP`` and ``OTHER`` and implied (true)
    for the others.  ``entity_type`` also takes the spaced spellings and ``LLP``, stored as the canonical name.
    """

    entity_name: str = Field(min_length=1, max_length=256)
    entity_type: EntityType
    entity_type_custom: str = Field(default="", max_length=256)
    is_registered: bool | None = None
    grievance_officer_details: GrievanceOfficerDetails
    customer_care_details: CustomerCareDetails

    @field_validator("entity_type", mode="before")
    @classmethod
    def _entity_type_spelling(cls, value: Any) -> Any:
        return _ENTITY_TYPE_ALIASES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _conditional_fields(self) -> ComplianceInfo:
        if self.entity_type == "OTHER" and not self.entity_type_custom.strip():
            raise _missing("entity_type_custom is required when entity_type is OTHER")
        if self.entity_type != "OTHER" and self.entity_type_custom:
            raise ValueError("entity_type_custom is only for entity_type OTHER")
        if self.entity_type in REGISTRATION_ASKED and self.is_registered is None:
            raise _missing(f"is_registered is required when entity_type is {self.entity_type}")
        return self

    def stored(self) -> dict[str, Any]:
        """The document as kept and answered: every top-level field present, ``is_registered`` filled in."""
        out = self.model_dump(exclude_none=True)
        out["is_registered"] = True if self.is_registered is None else self.is_registered
        return out


class BasicAuth(_Strict):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(max_length=1024)


class ProviderConfig(_Strict):
    bearer: str | None = Field(default=None, min_length=1, max_length=4096)
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _one_scheme(self) -> ProviderConfig:
        if (self.bearer is None) == (self.basic is None):
            raise ValueError("config needs exactly one of bearer or basic")
        return self


class MediaProvider(_Strict):
    """Reference §2.6 plus ``url_prefix`` (ours): the provider's credentials go only to links under it
    (``shared.netguard.under_prefix``); a provider without one never has its credentials sent."""

    name: str = Field(min_length=1, max_length=128)
    type: Literal["www"] = "www"
    url_prefix: str | None = Field(default=None, min_length=1, max_length=2048)
    config: ProviderConfig

    @field_validator("url_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ValueError("not a URL") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.username is not None or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError("must have no credentials, query or fragment")
        return value


def masked_provider(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored provider for GET: the shape as posted with its secrets replaced by ``****``.

    The original returned them in clear; OpenPrem never sends a credential back out once stored.
    """
    out = dict(stored)
    config = dict(out.get("config") or {})
    if config.get("bearer") is not None:
        config["bearer"] = SECRET_MASK
    basic = config.get("basic")
    if isinstance(basic, dict):
        config["basic"] = {**basic, "password": SECRET_MASK}
    out["config"] = config
    return out
