"""``/v1/contacts``: which numbers are WhatsApp users (reference §2.12); any authenticated user may ask."""

from __future__ import annotations

from aiohttp import web

from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok, read_json, validate
from webapp.openapi import doc
from webapp.routes.common import rpc
from webapp.schemas.contacts import ContactsBody
from webapp.schemas.responses import ContactsResponse

routes = web.RouteTableDef()


@routes.post("/v1/contacts")
@doc(
    "Check which numbers are WhatsApp users",
    request=ContactsBody,
    responses={200: ContactsResponse},
    rpc=True,
    tags=["contacts"],
)
async def check_contacts(request: web.Request) -> web.Response:
    """``{"contacts":[{"input","status","wa_id"?}]}``, one entry per input in order; 1011 when not connected."""
    body = validate(ContactsBody, await read_json(request))
    result = await rpc(request, "contacts.check", body.rpc_payload())
    contacts = result.get("contacts")
    if not isinstance(contacts, list):
        raise ApiError(ErrorCode.GENERIC, "coreapp returned no contacts")
    return ok(request, {"contacts": contacts})
