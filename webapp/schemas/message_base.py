"""What every ``/v1/messages`` body shares (recipient, recipient type, ttl) and the small checks the per-type
models reuse, so a limit is reported with the same code and wording wherever it appears."""

from __future__ import annotations

import re
from typing import Any, overload

from pydantic import field_validator

from shared.errors import ErrorCode
from webapp.schemas.base import RequestModel, onprem_error

_RECIPIENT = re.compile(r"^\+?[0-9][0-9 ()\-.]*$")
_MAX_RECIPIENT_DIGITS = 15  # E.164


@overload
def require_text(value: str, max_length: int, code: ErrorCode = ...) -> str: ...
@overload
def require_text(value: None, max_length: int, code: ErrorCode = ...) -> None: ...
def require_text(value: str | None, max_length: int, code: ErrorCode = ErrorCode.INVALID_PARAMETER) -> str | None:
    """A non-blank string of at most ``max_length`` characters; too long is ``code`` (1001 for bodies).

    ``None`` (an optional field sent as ``null``) passes through: whether it may be absent is the model's call.
    """
    if value is None:
        return None
    if not value.strip():
        raise ValueError("must not be empty")
    return limit(value, max_length, code)


@overload
def limit(value: str, max_length: int, code: ErrorCode = ...) -> str: ...
@overload
def limit(value: None, max_length: int, code: ErrorCode = ...) -> None: ...
def limit(value: str | None, max_length: int, code: ErrorCode = ErrorCode.INVALID_PARAMETER) -> str | None:
    if value is not None and len(value) > max_length:
        raise onprem_error(code, f"must be at most {max_length} characters")
    return value


def only_given(model: RequestModel, allowed: str, candidates: tuple[str, ...], what: str) -> None:
    """For objects keyed by their ``type``: the field named ``allowed`` must be set (1008), the others not (1010)."""
    if getattr(model, allowed) is None:
        raise onprem_error(ErrorCode.MISSING_PARAMETER, f"'{allowed}' is required for a {what} of type {allowed}")
    extra = [name for name in candidates if name != allowed and getattr(model, name) is not None]
    if extra:
        message = f"'{extra[0]}' is not allowed for a {what} of type {allowed}"
        raise onprem_error(ErrorCode.UNEXPECTED_PARAMETER, message)


class MessageBase(RequestModel):
    to: str
    recipient_type: str = "individual"
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
