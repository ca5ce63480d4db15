"""``/v1/account``: registration, verification, two-step verification and shards, done by coreapp.

All of it is ROLE_ADMIN only: it decides which number this install speaks for (reference §2.2, §2.3, §5.3,
contracts §3).
"""

from __future__ import annotations

from aiohttp import web

from shared.bus.contract.account import (
    GET_SHARDS,
    REGISTER,
    REMOVE_TWO_STEP,
    SET_SHARDS,
    SET_TWO_STEP,
    VERIFY,
    Register,
    SetShards,
    TwoStep,
    Verify,
)
from shared.bus.rpc import EMPTY
from webapp.envelope import ok, read_json, validate
from webapp.openapi import doc
from webapp.routes.common import require_admin, rpc
from webapp.schemas.account import RegisterBody, ShardsBody, TwoStepBody, VerifyBody
from webapp.schemas.responses import AccountCodeSent, ShardsResponse

routes = web.RouteTableDef()

TWO_STEP_PATH = "/v1/settings/account/two-step"
SHARDS_PATH = "/v1/account/shards"


@routes.post("/v1/account")
@doc(
    "Register: 201 when already registered, 202 when a code was sent",
    request=RegisterBody,
    responses={201: None, 202: AccountCodeSent},
    errors=(403, 404),
    admin=True,
    rpc=True,
    tags=["account"],
)
async def register(request: web.Request) -> web.Response:
    """201 when the number is already registered, 202 ``{"account":[{"vname"}]}`` when a code was sent."""
    require_admin(request)
    body = validate(RegisterBody, await read_json(request))
    payload = Register(cc=body.cc, phone_number=body.phone_number, method=body.method, cert=body.cert, pin=body.pin)
    result = await rpc(request, REGISTER, payload)
    if result.status == "registered":
        return ok(request, status=201)
    return ok(request, {"account": [{"vname": result.vname or ""}]}, status=202)


@routes.post("/v1/account/verify")
@doc(
    "Verify the registration code",
    request=VerifyBody,
    responses={201: None},
    errors=(403, 404),
    admin=True,
    rpc=True,
    tags=["account"],
)
async def verify(request: web.Request) -> web.Response:
    """201 once the code is accepted (the docs say 201; the community spec says 200)."""
    require_admin(request)
    body = validate(VerifyBody, await read_json(request))
    await rpc(request, VERIFY, Verify(code=body.normalised()))
    return ok(request, status=201)


@routes.post(TWO_STEP_PATH)
@doc("Turn two-step verification on (set the PIN)", request=TwoStepBody, admin=True, rpc=True, tags=["account"])
async def set_two_step(request: web.Request) -> web.Response:
    """Turn two-step verification on: re-registering the number then needs this PIN."""
    require_admin(request)
    body = validate(TwoStepBody, await read_json(request))
    await rpc(request, SET_TWO_STEP, TwoStep(pin=body.pin))
    return ok(request)


@routes.delete(TWO_STEP_PATH)
@doc("Turn two-step verification off", admin=True, rpc=True, tags=["account"])
async def remove_two_step(request: web.Request) -> web.Response:
    require_admin(request)
    await rpc(request, REMOVE_TWO_STEP, EMPTY)
    return ok(request)


@routes.get(SHARDS_PATH)
@doc("The shard count", responses={200: ShardsResponse}, admin=True, rpc=True, tags=["account"])
async def get_shards(request: web.Request) -> web.Response:
    require_admin(request)
    result = await rpc(request, GET_SHARDS, EMPTY)
    return ok(request, {"account": {"shards": result.shards}})


@routes.post(SHARDS_PATH)
@doc(
    "Set the shard count (only 1 without multiconnect)",
    request=ShardsBody,
    responses={201: None},
    admin=True,
    rpc=True,
    tags=["account"],
)
async def set_shards(request: web.Request) -> web.Response:
    """201 when coreapp accepts the count; without multiconnect only ``shards: 1`` is (1009 otherwise)."""
    require_admin(request)
    body = validate(ShardsBody, await read_json(request))
    payload = SetShards(cc=body.cc, phone_number=body.phone_number, shards=body.shards, pin=body.pin)
    await rpc(request, SET_SHARDS, payload)
    return ok(request, status=201)
