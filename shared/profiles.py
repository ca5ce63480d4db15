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
