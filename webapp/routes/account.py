"""``/v1/account``: registration and verification, done by coreapp (reference §2.3, contracts §3)."""

from __future__ import annotations

from aiohttp import web

from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok, read_json, validate
from webapp.routes.common import require_admin, rpc
from webapp.schemas.account import RegisterBody, VerifyBody

routes = web.RouteTableDef()


@routes.post("/v1/account")
async def register(request: web.Request) -> web.Response:
    """201 when the number is already registered, 202 ``{"account":[{"vname"}]}`` when a code was sent."""
    require_admin(request)
    body = validate(RegisterBody, await read_json(request))
    result = await rpc(request, "account.register", body.model_dump(exclude_none=True))
    status = result.get("status")
    if status == "registered":
        return ok(request, status=201)
    if status == "code_sent":
        return ok(request, {"account": [{"vname": str(result.get("vname", ""))}]}, status=202)
    raise ApiError(ErrorCode.GENERIC, "unexpected answer from coreapp")


@routes.post("/v1/account/verify")
async def verify(request: web.Request) -> web.Response:
    """201 once the code is accepted (the docs say 201; the community spec says 200)."""
    require_admin(request)
    body = validate(VerifyBody, await read_json(request))
    await rpc(request, "account.verify", {"code": body.normalised()})
    return ok(request, status=201)
