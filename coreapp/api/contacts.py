"""RPC ``contacts.check`` (``POST /v1/contacts``), ``contacts.get_identity`` / ``contacts.ack_identity``
(``GET``/``PUT /v1/contacts/{wa_id}/identity``): the contract checks the shapes, the services do the work."""

from __future__ import annotations

from coreapp.api.registry import RpcRegistry
from coreapp.services.contacts import ContactsService
from coreapp.services.keys import IdentityAcks
from shared.bus.contract import contacts
from shared.ids import WaId


class ContactsApi:
    def __init__(self, service: ContactsService, identities: IdentityAcks) -> None:
        self._service = service
        self._identities = identities

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(contacts.CHECK, self.check)
        registry.add(contacts.GET_IDENTITY, self.get_identity)
        registry.add(contacts.ACK_IDENTITY, self.ack_identity)

    async def check(self, request: contacts.CheckContacts) -> contacts.Contacts:
        answers = await self._service.check(
            request.contacts, wait=request.blocking == "wait", force_check=request.force_check
        )
        return contacts.Contacts(contacts=answers)

    async def get_identity(self, request: contacts.IdentityOf) -> contacts.IdentityReply:
        """The contact's latest identity change; 1006 when none was recorded."""
        return await self._identities.get(WaId(request.wa_id))

    async def ack_identity(self, request: contacts.AckIdentity) -> contacts.IdentityReply:
        """The identity, acknowledged; 1009 wrong hash, 1006 none recorded."""
        return await self._identities.acknowledge(WaId(request.wa_id), request.hash)
