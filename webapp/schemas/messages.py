"""``POST /v1/messages`` and ``PUT /v1/messages/{id}`` (reference §2.6): the entry point for message bodies.

``OutboundMessage`` is the discriminated union on ``type`` (and, for ``interactive``, on ``interactive.type``);
the per-family models live beside this module.  ``parse_message`` checks ``type`` first and then validates with
the one model it names, so an unknown type is one clear 1009 and a field error names the field
(``interactive.action.sections``), never a union branch.  Every model is strict: a stray key is 1010, a missing
one 1008, a bad value 1009 unless the validator picks a code (1001, 2014, 2015, 2016, 2023, ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from pydantic import Discriminator, Tag, field_validator

from shared.bus.contract.messages import Idempotency, SendMessage
from shared.errors import ApiError, ErrorCode
from shared.idempotency import fingerprint
from shared.message_types import OUTBOUND, MessageType
from webapp.envelope import validate
from webapp.schemas.base import RequestModel, onprem_error
from webapp.schemas.message_base import MessageBase
from webapp.schemas.message_content import ContactsMessage, LocationMessage, ReactionMessage
from webapp.schemas.message_interactive import (
    INTERACTIVE_TYPES,
    InteractiveButtonMessage,
    InteractiveListMessage,
)
from webapp.schemas.message_media import (
    AudioMessage,
    DocumentMessage,
    ImageMessage,
    StickerMessage,
    VideoMessage,
)
from webapp.schemas.message_products import InteractiveProductListMessage, InteractiveProductMessage
from webapp.schemas.message_template import HsmMessage, TemplateMessage

MAX_TEXT_LENGTH = 4096


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


class TextMessage(MessageBase):
    type: Literal["text"]
    text: TextBody
    preview_url: bool = False
    """Text only (reference §2.6): on any other type it is an unexpected parameter (1010)."""


_MODELS: dict[MessageType, type[MessageBase]] = {
    MessageType.TEXT: TextMessage,
    MessageType.IMAGE: ImageMessage,
    MessageType.AUDIO: AudioMessage,
    MessageType.VIDEO: VideoMessage,
    MessageType.DOCUMENT: DocumentMessage,
    MessageType.STICKER: StickerMessage,
    MessageType.LOCATION: LocationMessage,
    MessageType.CONTACTS: ContactsMessage,
    MessageType.TEMPLATE: TemplateMessage,
    MessageType.HSM: HsmMessage,
    MessageType.REACTION: ReactionMessage,
}
"""One model per outbound type; ``interactive`` has one per ``interactive.type`` instead."""
_INTERACTIVE_MODELS: dict[str, type[MessageBase]] = {
    "button": InteractiveButtonMessage,
    "list": InteractiveListMessage,
    "product": InteractiveProductMessage,
    "product_list": InteractiveProductListMessage,
}
assert tuple(_INTERACTIVE_MODELS) == INTERACTIVE_TYPES, "a model per interactive type"
MESSAGE_TYPES: frozenset[MessageType] = OUTBOUND
"""What ``type`` may be: ``shared.message_types.OUTBOUND``."""
assert set(_MODELS) == OUTBOUND - {MessageType.INTERACTIVE}, "a model per outbound message type"
assert all(
    set(model.model_fields) <= set(SendMessage.__struct_fields__)
    for model in (*_MODELS.values(), *_INTERACTIVE_MODELS.values())
), "SendMessage carries every field a message model validates"
_TYPE_NAMES = ", ".join(sorted(MESSAGE_TYPES))


def _tag(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else getattr(data, key, None)


def _interactive_kind(data: Any) -> Any:
    return _tag(_tag(data, "interactive"), "type")


InteractiveMessage = Annotated[
    Annotated[InteractiveButtonMessage, Tag("button")]
    | Annotated[InteractiveListMessage, Tag("list")]
    | Annotated[InteractiveProductMessage, Tag("product")]
    | Annotated[InteractiveProductListMessage, Tag("product_list")],
    Discriminator(_interactive_kind),
]

OutboundMessage = Annotated[
    Annotated[TextMessage, Tag("text")]
    | Annotated[ImageMessage, Tag("image")]
    | Annotated[AudioMessage, Tag("audio")]
    | Annotated[VideoMessage, Tag("video")]
    | Annotated[DocumentMessage, Tag("document")]
    | Annotated[StickerMessage, Tag("sticker")]
    | Annotated[LocationMessage, Tag("location")]
    | Annotated[ContactsMessage, Tag("contacts")]
    | Annotated[InteractiveMessage, Tag("interactive")]
    | Annotated[TemplateMessage, Tag("template")]
    | Annotated[HsmMessage, Tag("hsm")]
    | Annotated[ReactionMessage, Tag("reaction")],
    Discriminator(lambda data: _tag(data, "type")),
]
"""Every ``/v1/messages`` body, discriminated on ``type`` (for schema generation and typing)."""


def _model_for(data: dict[str, Any]) -> type[MessageBase]:
    kind = data.get("type")
    if kind is None:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "type: required parameter is missing")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "type: must be one of " + _TYPE_NAMES)
    if kind != MessageType.INTERACTIVE:
        return _MODELS[MessageType(kind)]
    interactive = data.get("interactive")
    if interactive is None:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "interactive: required parameter is missing")
    if not isinstance(interactive, dict):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "interactive: must be an object")
    sub = interactive.get("type")
    if sub is None:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "interactive.type: required parameter is missing")
    if not isinstance(sub, str) or sub not in _INTERACTIVE_MODELS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "interactive.type: must be one of " + ", ".join(INTERACTIVE_TYPES))
    return _INTERACTIVE_MODELS[sub]


def parse_message(data: dict[str, Any]) -> MessageBase:
    """Validate a send request; raises ``ApiError`` (1001/1002/1008/1009/1010/2004/2014/2015/2016/2023).

    A member sent as ``null`` counts as not sent (clients serialise unset optionals that way), so a required
    one is reported missing (1008) and no validator ever sees ``None`` for a value it must check.
    """
    present = _without_nulls(data)
    return validate(_model_for(present), present)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def send_request(message: MessageBase, idempotency_key: str | None = None) -> SendMessage:
    """What ``messages.send`` receives: the validated body with ``to`` normalised, unset optionals dropped (they
    stay ``UNSET`` in the struct, so it encodes to exactly this JSON).  With a key, the fingerprint is of that
    same JSON: two bodies that validate to the same message are the same request."""
    document = message.model_dump(mode="json", exclude_none=True)
    request = msgspec.convert(document, SendMessage)
    if idempotency_key is not None:
        request.idempotency = Idempotency(key=idempotency_key, request_sha256=fingerprint(document))
    return request


class MarkRead(RequestModel):
    """``PUT /v1/messages/{id}``: the only status a business can set is ``read``."""

    status: Literal["read"]


def parse_mark_read(data: dict[str, Any]) -> MarkRead:
    return validate(MarkRead, data)
