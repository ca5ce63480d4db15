"""Typed identifiers and their generators.

Message ids follow the On-Prem look (``gBEGkYiEB1VXAglK1ZEqA1YKPrU``): url-safe base64 of random bytes, so a
client cannot tell them from the original's.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import NewType

MessageId = NewType("MessageId", str)
WaId = NewType("WaId", str)
MediaId = NewType("MediaId", str)
EventId = NewType("EventId", str)
Username = NewType("Username", str)


def new_message_id() -> MessageId:
    """A fresh outbound message id (27 characters like the original)."""
    raw = b"\x80\x11" + secrets.token_bytes(18)
    return MessageId(base64.urlsafe_b64encode(raw).decode().rstrip("="))


def new_event_id() -> EventId:
    """A stable id for a webhook event, so receivers can drop duplicates."""
    return EventId(uuid.uuid4().hex)


def new_media_id() -> MediaId:
    """A media id: a UUID, as the original returned."""
    return MediaId(str(uuid.uuid4()))
