"""Bodies of ``/v1/account`` (registration, reference §2.3)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import Field, field_validator

from webapp.schemas.base import RequestModel


class RegisterBody(RequestModel):
    cc: Annotated[str, Field(pattern=r"^[0-9]{1,3}$")]
    phone_number: Annotated[str, Field(pattern=r"^[0-9]{1,17}$")]
    method: Literal["sms", "voice"]
    cert: Annotated[str, Field(min_length=1, max_length=16384)]
    pin: Annotated[str, Field(pattern=r"^[0-9]{6}$")] | None = None

    @field_validator("cert")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be the base64 certificate from WhatsApp Manager") from None
        if not decoded:
            raise ValueError("must not be empty")
        return value.strip()


class VerifyBody(RequestModel):
    # Six digits, sometimes written "123-456"; coreapp is sent the digits only.
    code: Annotated[str, Field(pattern=r"^[0-9]{3}-?[0-9]{3}$")]

    def normalised(self) -> str:
        return self.code.replace("-", "")


Pin = Annotated[str, Field(pattern=r"^[0-9]{6}$")]


class TwoStepBody(RequestModel):
    """``POST /v1/settings/account/two-step``: exactly six digits, as a string."""

    pin: Pin


class ShardsBody(RequestModel):
    """``POST /v1/account/shards``: the registered number and one of the static shard counts (reference §5.3)."""

    cc: Annotated[str, Field(pattern=r"^[0-9]{1,3}$")]
    phone_number: Annotated[str, Field(pattern=r"^[0-9]{1,17}$")]
    shards: Literal[1, 2, 4, 8, 16, 32]
    pin: Pin | None = None
    cert: Annotated[str, Field(min_length=1, max_length=16384)] | None = None  # accepted since v2.39.1, unused
