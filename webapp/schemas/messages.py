"""``POST /v1/messages`` (reference §2.6).

``type`` is checked first so a known-but-not-yet-modelled type gets one clear 1009 instead of a pile of
field errors; each modelled type is a strict model, so stray keys are 1010 and a bad value 1009.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import field_validator

from shared.errors import ApiError, ErrorCode
from webapp.envelope import validate
from webapp.schemas.base import RequestModel, onprem_error

MAX_TEXT_LENGTH = 4096
MESSAGE_TYPES = frozenset(
    {
        "text", "image", "audio", "video", "document", "sticker", "location", "contacts",
        "interactive", "template", "hsm", "reaction",
    }
)  # fmt: skip
SUPPORTED_TYPES = frozenset({"text"})
_RECIPIENT = re.compile(r"^\+?[0-9][0-9 ()\-.]*$")
_MAX_RECIPIENT_DIGITS = 15  # E.164


class TextBody(RequestModel):
    body: str

    @field_validator("body")
    @classmethod
    def _length(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > MAX_TEXT_LENGTH:
            raise onprem_error(ErrorCode.MESSAGE_TOO_LONG, f"must be at most {MAX_TEXT_LENGTH} characters")
        return value


class _Message(RequestModel):
    to: str
    recipient_type: str = "individual"
    preview_url: bool = False
    ttl: dict[str, Any] | None = None

    @field_validator("to")
    @classmethod
    def _normalise_to(cls, value: str) -> str:
        """wa_ids are digits; accept a formatted phone number (``+1 (202) 555-0123``) and keep the digits."""
        if not _RECIPIENT.match(value.strip()):
            raise ValueError("must be a phone number or wa_id (digits, optionally with +, spaces, dashes, parens)")
        digits = re.sub(r"[^0-9]", "", value)
        if len(digits) > _MAX_RECIPIENT_DIGITS:
            raise ValueError(f"must have at most {_MAX_RECIPIENT_DIGITS} digits")
        return digits

    @field_validator("recipient_type")
    @classmethod
    def _individual_only(cls, value: str) -> str:
        if value == "group":
            raise onprem_error(ErrorCode.INVALID_RECIPIENT_TYPE, "group messages are not supported")
        if value != "individual":
            raise onprem_error(ErrorCode.INVALID_RECIPIENT_TYPE, "must be 'individual'")
        return value


class TextMessage(_Message):
    type: Literal["text"]
    text: TextBody


OutboundMessage = TextMessage


def parse_message(data: dict[str, Any]) -> OutboundMessage:
    """Validate a send request; raises ``ApiError`` (1008/1009/1010/1001/1002)."""
    kind = data.get("type")
    if kind is None:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "type: required parameter is missing")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "type: must be one of " + ", ".join(sorted(MESSAGE_TYPES)))
    if kind not in SUPPORTED_TYPES:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"type: {kind!r} messages are not supported yet")
    return validate(TextMessage, data)


def to_rpc_payload(message: OutboundMessage) -> dict[str, Any]:
    """What ``messages.send`` receives: the validated body with ``to`` normalised, unset optionals dropped."""
    return message.model_dump(mode="json", exclude_none=True)
