"""RPC ``contacts.check`` (``POST /v1/contacts``), ``contacts.get_identity`` / ``contacts.ack_identity``
(``GET``/``PUT /v1/contacts/{wa_id}/identity``): payload checks here, the work in the services."""

from __future__ import annotations

from collections.abc import Mapping

from coreapp.api.handlers import Handler
from coreapp.chat.ready import LinkGetter
from coreapp.services.contacts import ContactsService
from coreapp.services.keys import IdentityAcks
from coreapp.storage.contacts import ContactStore
from shared.bus.base import Payload
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId
from shared.tasks import TaskSupervisor

MAX_CONTACTS = 1000
"""Per call; webapp enforces the same bound with a field-level 1009."""
BLOCKING = ("wait", "no_wait")


MAX_HASH_LENGTH = 128


def _wa_id(payload: Payload) -> WaId:
    wa_id = payload.get("wa_id")
    if not isinstance(wa_id, str) or not wa_id.isdigit() or not 5 <= len(wa_id) <= 20:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "wa_id must be the contact's WhatsApp id (digits only)")
    return WaId(wa_id)


class ContactsApi:
    def __init__(self, service: ContactsService, identities: IdentityAcks | None = None) -> None:
        self.service = service
        self.identities = identities

    async def get_identity(self, payload: Payload) -> Payload:
        """``{"wa_id"}`` → ``{"identity": [{"hash", "created_timestamp", "acknowledged"}]}``; 1006 when none."""
        assert self.identities is not None
        return await self.identities.get(_wa_id(payload))

    async def ack_identity(self, payload: Payload) -> Payload:
        """``{"wa_id", "hash"}`` → the identity, acknowledged; 1009 wrong hash, 1006 none recorded."""
        assert self.identities is not None
        wa_id, key_hash = _wa_id(payload), payload.get("hash")
        if key_hash is None:
            raise ApiError(ErrorCode.MISSING_PARAMETER, "hash is required")
        if not isinstance(key_hash, str) or not key_hash or len(key_hash) > MAX_HASH_LENGTH:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "hash must be the identity hash (a string)")
        return await self.identities.acknowledge(wa_id, key_hash)

    async def check(self, payload: Payload) -> Payload:
        blocking = payload.get("blocking", "no_wait")
        contacts = payload.get("contacts")
        force_check = payload.get("force_check", False)
        if blocking not in BLOCKING:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "blocking must be 'wait' or 'no_wait'")
        if contacts is None:
            raise ApiError(ErrorCode.MISSING_PARAMETER, "contacts is required")
        if not isinstance(contacts, list) or not all(isinstance(c, str) for c in contacts):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "contacts must be a list of strings")
        if not 1 <= len(contacts) <= MAX_CONTACTS:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"contacts must hold 1 to {MAX_CONTACTS} numbers")
        if not isinstance(force_check, bool):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "force_check must be a boolean")
        answers = await self.service.check(contacts, wait=blocking == "wait", force_check=force_check)
        return {"contacts": answers}


def contacts_routes(
    db: Database, link: LinkGetter, supervisor: TaskSupervisor, identities: IdentityAcks
) -> Mapping[str, Handler]:
    """What ``CoreApp`` mounts with ``RpcApi.add_routes``."""
    api = ContactsApi(ContactsService(ContactStore(db), link, supervisor), identities)
    return {
        "contacts.check": api.check,
        "contacts.get_identity": api.get_identity,
        "contacts.ack_identity": api.ack_identity,
    }
