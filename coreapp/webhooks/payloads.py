"""Builders for On-Prem webhook bodies (reference §3): no Cloud ``object/entry/changes`` wrapper.

Kept pure (dicts in, dicts out) so the shapes are tested once here and every producer (inbound messages,
status changes, async errors) emits the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.appsettings import ApplicationSettings
from shared.errors import ErrorCode

CONTACTS_TYPES = frozenset({"text", "location", "contacts"})
"""Message types whose webhook carries ``contacts`` (reference §3.1: not media, not system)."""

STATUSES = frozenset({"sent", "delivered", "read", "failed", "deleted", "warning"})

_SEND_ONLY_KEYS = frozenset({"to", "recipient_type", "preview_url", "messaging_product"})
_HEAD_KEYS = ("from", "id", "timestamp", "type")
"""Keys of the send-side message object that an inbound webhook never carries."""


def epoch_string(timestamp: int | float | str) -> str:
    """On-Prem timestamps are whole epoch seconds sent as a string (``"1518694235"``)."""
    if isinstance(timestamp, str):
        return str(int(float(timestamp)))
    return str(int(timestamp))


def inbound_message(message: Mapping[str, Any], sender_wa_id: str, sender_name: str) -> dict[str, Any]:
    """``{"contacts"?: [...], "messages": [...]}`` for one received message.

    ``message`` is the decrypted content plus ``id``, ``timestamp`` and ``type``; ``from`` is set from the
    sender so a phone cannot claim another number.
    """
    if "id" not in message or "type" not in message or "timestamp" not in message:
        raise ValueError("inbound message needs id, type and timestamp")
    rest = {k: v for k, v in message.items() if k not in _SEND_ONLY_KEYS and k not in _HEAD_KEYS}
    msg: dict[str, Any] = {
        "from": sender_wa_id,
        "id": message["id"],
        "timestamp": epoch_string(message["timestamp"]),
        "type": message["type"],
        **rest,
    }
    body: dict[str, Any] = {}
    if msg["type"] in CONTACTS_TYPES:
        body["contacts"] = [{"profile": {"name": sender_name}, "wa_id": sender_wa_id}]
    body["messages"] = [msg]
    return body


def system_message(
    message_id: str, from_wa_id: str, timestamp: int | float | str, system: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """``{"messages":[{"from","id","timestamp","type":"system","system":{…}}]}``: a notice about a user (identity
    or number change), not something they wrote; no ``contacts`` block (reference §3.1)."""
    message = {
        "from": from_wa_id,
        "id": message_id,
        "timestamp": epoch_string(timestamp),
        "type": "system",
        "system": dict(system),
    }
    return {"messages": [{**message, **extra}]}


def _error_entry(error: ErrorCode | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(error, ErrorCode):
        return {"code": error.code, "title": error.title}
    return dict(error)


def status(
    message_id: str,
    recipient_id: str,
    status: str,
    timestamp: int | float | str,
    errors: Sequence[ErrorCode | Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``{"statuses": [{"id","recipient_id","status","timestamp","errors"?}]}``; ``errors`` go with ``failed``."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    entry: dict[str, Any] = {
        "id": message_id,
        "recipient_id": recipient_id,
        "status": status,
        "timestamp": epoch_string(timestamp),
    }
    if errors:
        entry["errors"] = [_error_entry(e) for e in errors]
    return {"statuses": [entry]}


def error(code: int, title: str, details: str | None = None) -> dict[str, Any]:
    """``{"errors": [{"code","title","details"?}]}``: an async failure not tied to a message (reference §3.3)."""
    entry: dict[str, Any] = {"code": code, "title": title}
    if details:
        entry["details"] = details
    return {"errors": [entry]}


def wants_status(settings: ApplicationSettings, status: str) -> bool:
    """Whether a ``status`` change is sent at all.

    ``sent`` only when ``sent_status`` or ``webhooks.message.sent``; ``delivered``/``read`` per their
    ``webhooks.message`` flag; ``failed`` (and ``deleted``/``warning``) always, since nothing turns them off.
    """
    if status == "sent":
        return settings.wants_sent_status()
    if status == "delivered":
        return settings.webhooks.message.delivered
    if status == "read":
        return settings.webhooks.message.read
    return True
