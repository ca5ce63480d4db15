"""``contacts.*``: which numbers are WhatsApp users, and a contact's identity (reference §2.12, §2.1)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.bus.contract.types import WaIdText
from shared.bus.rpc import Method, Placement

MAX_CONTACTS = 1000
"""Per call; webapp enforces the same bound with a field-level 1009."""
MAX_HASH_LENGTH = 128


class CheckContacts(msgspec.Struct):
    contacts: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_CONTACTS)]
    blocking: Literal["wait", "no_wait"] = "no_wait"
    force_check: bool = False


class ContactAnswer(msgspec.Struct, omit_defaults=True):
    input: str
    status: Literal["valid", "invalid", "processing"]
    wa_id: Annotated[str, msgspec.Meta(description="only for valid contacts")] | None = None


class Contacts(msgspec.Struct):
    contacts: Annotated[list[ContactAnswer], msgspec.Meta(description="one entry per input, in order")]


class IdentityOf(msgspec.Struct):
    wa_id: WaIdText


class AckIdentity(msgspec.Struct):
    wa_id: WaIdText
    hash: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_HASH_LENGTH)]


class IdentityEntry(msgspec.Struct):
    hash: Annotated[str, msgspec.Meta(description="fingerprint of the contact's identity change")]
    created_timestamp: Annotated[int, msgspec.Meta(description="when the identity changed (epoch seconds)")]
    acknowledged: bool


class IdentityReply(msgspec.Struct):
    identity: list[IdentityEntry]


CHECK = Method(
    "contacts.check",
    CheckContacts,
    Contacts,
    doc="one entry per input, in input order",
    errors="1008, 1009, 1011 not connected",
    placement=Placement.ANY_SHARD,
)
GET_IDENTITY = Method(
    "contacts.get_identity",
    IdentityOf,
    IdentityReply,
    doc="`identity: [{hash, created_timestamp, acknowledged}]`: the contact's latest identity change "
    "(`GET /v1/contacts/{wa_id}/identity`)",
    errors="1006 no change recorded, 1009 bad wa_id",
    placement=Placement.RECIPIENT,
    recipient=lambda request: request.wa_id,
)
ACK_IDENTITY = Method(
    "contacts.ack_identity",
    AckIdentity,
    IdentityReply,
    doc="same, `acknowledged: true` (`PUT /v1/contacts/{wa_id}/identity`)",
    errors="1009 not the current hash, 1006 none recorded, 1008 no hash",
    placement=Placement.RECIPIENT,
    recipient=lambda request: request.wa_id,
)
