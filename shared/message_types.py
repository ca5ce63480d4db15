"""The message types of the On-Premises API, one enum for webapp, coreapp and the bus contract.

``OUTBOUND`` is what ``POST /v1/messages`` accepts (reference §2.6); inbound messages add ``button`` (a
template quick reply) and ``unknown`` (a message that could not be decrypted or had no type).  The media types
are the ones whose object names a media id or link and go through the media service.
"""

from __future__ import annotations

import enum


class MessageType(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    TEMPLATE = "template"
    HSM = "hsm"
    REACTION = "reaction"
    BUTTON = "button"
    UNKNOWN = "unknown"

    @property
    def is_media(self) -> bool:
        return self in MEDIA

    @classmethod
    def parse(cls, value: object) -> MessageType:
        """The member for ``value``; anything else (a phone's new type, a missing one) is ``UNKNOWN``."""
        return _BY_VALUE.get(value, cls.UNKNOWN) if isinstance(value, str) else cls.UNKNOWN


MEDIA: frozenset[MessageType] = frozenset(
    {MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO, MessageType.DOCUMENT, MessageType.STICKER}
)
OUTBOUND: frozenset[MessageType] = frozenset(MessageType) - {MessageType.BUTTON, MessageType.UNKNOWN}
"""The types a business may send."""

_BY_VALUE: dict[str, MessageType] = {member.value: member for member in MessageType}
