"""``messages.*``: send, mark as read, and the message garbage collection (reference §2.6, §2.10)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType

from shared.bus.contract.types import JsonObject, NonEmpty
from shared.bus.rpc import Empty, Method, Placement
from shared.idempotency import KEY_PATTERN, MAX_KEY_LENGTH
from shared.message_types import MessageType


class Idempotency(msgspec.Struct):
    """The ``Idempotency-Key`` of a send and the fingerprint of the body webapp validated (``shared.idempotency``)."""

    key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_KEY_LENGTH, pattern=KEY_PATTERN)]
    request_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class SendMessage(msgspec.Struct):
    """The ``/v1/messages`` body as webapp validated and normalised it (``to`` digits only, defaults filled in).

    The type's object is the member named by ``type`` (``text``, ``image``, …, ``contacts`` a list); its shape is
    owned by webapp's request models (``webapp/schemas``), so here it is a JSON object that coreapp composes
    into the encrypted content.  Members left out stay ``UNSET`` and are not encoded: the request carries
    exactly the body that was validated.  ``idempotency`` is not part of the message: with it, coreapp answers a
    key it already stored (same fingerprint) with that message's id and stores nothing new.
    """

    to: str
    type: MessageType = MessageType.TEXT
    recipient_type: str | UnsetType = UNSET
    preview_url: bool | UnsetType = UNSET
    ttl: JsonObject | UnsetType = UNSET
    text: JsonObject | UnsetType = UNSET
    image: JsonObject | UnsetType = UNSET
    audio: JsonObject | UnsetType = UNSET
    video: JsonObject | UnsetType = UNSET
    document: JsonObject | UnsetType = UNSET
    sticker: JsonObject | UnsetType = UNSET
    location: JsonObject | UnsetType = UNSET
    contacts: list[JsonObject] | UnsetType = UNSET
    interactive: JsonObject | UnsetType = UNSET
    template: JsonObject | UnsetType = UNSET
    hsm: JsonObject | UnsetType = UNSET
    reaction: JsonObject | UnsetType = UNSET
    idempotency: Idempotency | UnsetType = UNSET

    def body(self) -> JsonObject | list[JsonObject] | None:
        """The object of this message's type (``None`` when the caller left it out)."""
        value = getattr(self, self.type.value, UNSET)
        return None if value is UNSET else value


class SentMessage(msgspec.Struct):
    id: NonEmpty


class MarkRead(msgspec.Struct):
    id: NonEmpty


class GcResult(msgspec.Struct):
    deleted: Annotated[int, msgspec.Meta(ge=0, description="messages deleted (with their receipt log rows)")]
    complete: Annotated[
        bool, msgspec.Meta(description="false when the time budget ran out first: call again to continue")
    ]


SEND = Method(
    "messages.send",
    SendMessage,
    SentMessage,
    doc="`id` of the message, only after its row is committed; with `idempotency`, the key is stored in that "
    "transaction and a key stored within 24 h with the same `request_sha256` answers its message's `id` (nothing "
    "new stored or sent, even while not ready)",
    errors="1004 the key was used within 24 h for another request, 1011 not ready, 1013 invalid recipient format, "
    "1021 sending to self, 1016 disk nearly full, 1028 identity "
    "change not acknowledged; template/hsm: 2001 missing (not in the synced cache for namespace + name + language; "
    "`deterministic` = exact code, `fallback` = also another locale of the language), 2060/2061/2062 "
    "rejected/paused/disabled, 2000 body parameter count ≠ distinct `{{n}}` of the BODY text, 2005 hydrated body "
    "> 1024; media: the media service's errors, 1009 when there is none",
    placement=Placement.RECIPIENT,
    recipient=lambda request: request.to,
)
MARK_READ = Method(
    "messages.mark_read",
    MarkRead,
    Empty,
    doc="`{}` once the network acked the `ReadReceipt`; the inbound row's status becomes `read`",
    errors="1006 unknown id, 1009 an outbound id, 1011 not ready",
    placement=Placement.ANY_SHARD,
)
GC = Method(
    "messages.gc",
    Empty,
    GcResult,
    doc="deletes outbound read/failed after 7 days, delivered after 30, inbound after 30 (by last change / arrival) "
    "with their `message_receipt_log` rows, in batches of 500, within min(20 s, RPC timeout / 2); never "
    "`webhook_outbox`. `complete: false` = budget spent, call again",
)
