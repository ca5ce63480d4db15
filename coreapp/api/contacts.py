"""RPC ``contacts.check`` (``POST /v1/contacts``): payload checks here, the work in ``ContactsService``."""

from __future__ import annotations

from collections.abc import Mapping

from coreapp.api.handlers import Handler
from coreapp.chat.ready import LinkGetter
from coreapp.services.contacts import ContactsService
from coreapp.storage.contacts import ContactStore
from shared.bus.base import Payload
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor

MAX_CONTACTS = 1000
"""Per call; webapp enforces the same bound with a field-level 1009."""
BLOCKING = ("wait", "no_wait")


class ContactsApi:
    def __init__(self, service: ContactsService) -> None:
        self.service = service

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


def contacts_routes(db: Database, link: LinkGetter, supervisor: TaskSupervisor) -> Mapping[str, Handler]:
    """What ``CoreApp`` mounts with ``RpcApi.add_routes``."""
    api = ContactsApi(ContactsService(ContactStore(db), link, supervisor))
    return {"contacts.check": api.check}
