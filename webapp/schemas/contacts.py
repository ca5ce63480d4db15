"""Bodies of ``POST /v1/contacts`` (reference §2.12) and ``PUT /v1/contacts/{wa_id}/identity`` (§2.1), and the
identity answer.

Each contact is a string in any phone format; whether it is a possible number is coreapp's call (an
impossible one is answered ``invalid``, not refused), so only the shape is checked here.  The list holds
1 to ``MAX_CONTACTS`` entries: the reference names no bound, and 1000 keeps one network round trip and one
cache transaction small while covering any sane batch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.bus.contract.contacts import MAX_CONTACTS, CheckContacts, IdentityReply
from webapp.schemas.base import RequestModel

MAX_CONTACT_LENGTH = 64

Contact = Annotated[str, Field(min_length=1, max_length=MAX_CONTACT_LENGTH)]


class ContactsBody(RequestModel):
    blocking: Literal["wait", "no_wait"] = "no_wait"
    contacts: Annotated[list[Contact], Field(min_length=1, max_length=MAX_CONTACTS)]
    force_check: bool = False

    def rpc_payload(self) -> CheckContacts:
        return CheckContacts(contacts=list(self.contacts), blocking=self.blocking, force_check=self.force_check)


class IdentityAckBody(RequestModel):
    """``PUT /v1/contacts/{wa_id}/identity``: acknowledge the contact's current identity (the 480/1028 flow)."""

    hash: Annotated[str, Field(min_length=1, max_length=128, description="the hash GET shows (and the webhook)")]


IdentityResponse = IdentityReply
"""``GET``/``PUT /v1/contacts/{wa_id}/identity`` answer coreapp's reply as it is."""
