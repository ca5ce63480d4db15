"""coreapp's domain types: statuses, directions and the records stores hand to services (no SQL, no I/O)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from shared.ids import MessageId, WaId
from shared.message_types import MessageType


class AccountStatus(enum.StrEnum):
    PENDING = "pending"  # RegisterRequest answered, waiting for account.verify
    REGISTERED = "registered"


class MessageDirection(enum.StrEnum):
    IN = "in"
    OUT = "out"


class MessageStatus(enum.StrEnum):
    # outbound, in the order a message goes through them
    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    # inbound
    RECEIVED = "received"
    UNDECRYPTABLE = "undecryptable"


OUTBOUND_RANK: dict[MessageStatus, int] = {
    MessageStatus.ACCEPTED: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
}
"""Outbound statuses only move up this ladder; ``failed`` is recorded beside it (see services.receipts)."""


@dataclass(frozen=True, slots=True)
class Account:
    cc: str
    phone_number: str
    status: AccountStatus
    wa_id: WaId | None
    vname: str
    cert: str

    @property
    def registered(self) -> bool:
        return self.status is AccountStatus.REGISTERED and self.wa_id is not None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A row to insert into ``messages``."""

    id: MessageId
    direction: MessageDirection
    peer: WaId
    type: MessageType
    content: str | None  # UTF-8 JSON of the On-Prem message object (without ``to``)
    status: MessageStatus
    timestamp: int  # epoch seconds
    error_code: int | None = None
    error_title: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """An accepted outbound message waiting for the network's ack."""

    seq: int
    id: MessageId
    peer: WaId
    content: str
    timestamp: int
    envelopes: bytes | None  # msgpack list[Envelope] once encrypted (then resent byte for byte)


@dataclass(frozen=True, slots=True)
class MessageState:
    id: MessageId
    direction: MessageDirection
    peer: WaId
    status: MessageStatus


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    namespace: str
    name: str
    language: str
    status: str
    category: str
    components_json: str


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A keyed send: the key's SHA-256 and the fingerprint of the request (``shared.idempotency``)."""

    key_sha256: str
    request_sha256: str


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A stored key: the request it was first used with and the message that request stored."""

    key_sha256: str
    request_sha256: str
    message_id: MessageId
