"""``/v1/contacts``: which numbers are WhatsApp users (reference §2.12), and a contact's identity: read it and
acknowledge a change (§2.1; sends answer 1028 until then when ``show_security_notifications`` is on).  Any
authenticated user may ask."""

from __future__ import annotations

from aiohttp import web

from shared.bus.contract.contacts import ACK_IDENTITY, CHECK, GET_IDENTITY, AckIdentity, IdentityOf
from shared.bus.rpc import to_builtins
from webapp.envelope import ok, read_json, validate
from webapp.openapi import doc
from webapp.routes.common import rpc
from webapp.schemas.contacts import ContactsBody, IdentityAckBody, IdentityResponse
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
    result = await rpc(request, CHECK, body.rpc_payload())
    return ok(request, {"contacts": to_builtins(result)["contacts"]})


_WA_ID_PARAM = {"wa_id": {"type": "string", "pattern": "^[0-9]{5,20}$", "description": "the contact's WhatsApp id"}}


@routes.get("/v1/contacts/{wa_id}/identity")
@doc(
    "A contact's identity: its latest change and whether it was acknowledged",
    responses={200: IdentityResponse},
    errors=[400],
    path_params=_WA_ID_PARAM,
    rpc=True,
    tags=["contacts"],
    description="1006 when no identity change of this contact was seen; 1009 when wa_id is not digits.",
)
async def get_identity(request: web.Request) -> web.Response:
    result = await rpc(request, GET_IDENTITY, IdentityOf(wa_id=request.match_info["wa_id"]))
    return ok(request, {"identity": to_builtins(result)["identity"]})


@routes.put("/v1/contacts/{wa_id}/identity")
@doc(
    "Acknowledge a contact's identity change (sends to it answer 1028 until then)",
    request=IdentityAckBody,
    responses={200: IdentityResponse},
    path_params=_WA_ID_PARAM,
    rpc=True,
    tags=["contacts"],
    description="1009 when the hash is not the current one; 1006 when no identity change was seen.",
)
async def ack_identity(request: web.Request) -> web.Response:
    body = validate(IdentityAckBody, await read_json(request))
    payload = AckIdentity(wa_id=request.match_info["wa_id"], hash=body.hash)
    result = await rpc(request, ACK_IDENTITY, payload)
    return ok(request, {"identity": to_builtins(result)["identity"]})
