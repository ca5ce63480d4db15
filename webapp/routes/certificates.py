"""``/v1/certificates/*`` (reference §2.13): the HTTPS certificate (webapp) and the webhook CA (coreapp).

Bodies and answers are PEM text.  ``external/ca`` answers the self-signed certificate while it is the one
served; once an external or operator-configured certificate is in use its CA is the operator's, so 404.
"""

from __future__ import annotations

from aiohttp import web

from shared.bus.contract.settings import DELETE_WEBHOOKS_CA, GET_WEBHOOKS_CA, SET_WEBHOOKS_CA, SetCa
from shared.bus.rpc import EMPTY
from shared.errors import ApiError, ErrorCode
from webapp.certs import SERVER_TLS_KEY
from webapp.envelope import ok
from webapp.openapi import TEXT, doc
from webapp.routes.common import require_admin, rpc

routes = web.RouteTableDef()

PEM_TYPE = "text/plain"
PEM_CONTENT = {PEM_TYPE: TEXT}


async def _pem_body(request: web.Request) -> bytes:
    body = await request.read()
    if not body.strip():
        raise ApiError(ErrorCode.MISSING_PARAMETER, "the body must hold PEM text")
    return body


@routes.post("/v1/certificates/external")
@doc(
    "Replace the HTTPS certificate: PEM chain and private key",
    raw_body=PEM_CONTENT,
    admin=True,
    tags=["certificates"],
)
async def upload_external(request: web.Request) -> web.Response:
    require_admin(request)
    await request.app[SERVER_TLS_KEY].install(await _pem_body(request))
    return ok(request)


@routes.get("/v1/certificates/external/ca")
@doc(
    "The self-signed HTTPS certificate (404 once an external one is in use)",
    responses={},
    raw_responses={200: PEM_CONTENT},
    errors=(404,),
    admin=True,
    tags=["certificates"],
)
async def get_external_ca(request: web.Request) -> web.Response:
    require_admin(request)
    pem = request.app[SERVER_TLS_KEY].self_signed_pem()
    if pem is None:
        raise ApiError(ErrorCode.NOT_FOUND, "an external certificate is in use; its CA is not held here")
    return web.Response(text=pem, content_type=PEM_TYPE)


@routes.get("/v1/certificates/webhooks/ca")
@doc(
    "The CA that verifies the webhook server",
    responses={},
    raw_responses={200: PEM_CONTENT},
    errors=(404,),
    admin=True,
    rpc=True,
    tags=["certificates"],
)
async def get_webhooks_ca(request: web.Request) -> web.Response:
    require_admin(request)
    pem = (await rpc(request, GET_WEBHOOKS_CA, EMPTY)).pem
    if pem is None:
        raise ApiError(ErrorCode.NOT_FOUND, "no webhook CA is set")
    return web.Response(text=pem, content_type=PEM_TYPE)


@routes.post("/v1/certificates/webhooks/ca")
@doc(
    "Set the CA that verifies the webhook server (PEM)",
    raw_body=PEM_CONTENT,
    admin=True,
    rpc=True,
    tags=["certificates"],
)
async def set_webhooks_ca(request: web.Request) -> web.Response:
    """Only this CA verifies the webhook server from now on (not the system roots)."""
    require_admin(request)
    body = await _pem_body(request)
    try:
        pem = body.decode("ascii")
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "PEM text must be ASCII") from None
    await rpc(request, SET_WEBHOOKS_CA, SetCa(pem=pem))
    return ok(request)


@routes.delete("/v1/certificates/webhooks/ca")
@doc("Go back to the system roots for the webhook server", admin=True, rpc=True, tags=["certificates"])
async def delete_webhooks_ca(request: web.Request) -> web.Response:
    require_admin(request)
    await rpc(request, DELETE_WEBHOOKS_CA, EMPTY)
    return ok(request)
