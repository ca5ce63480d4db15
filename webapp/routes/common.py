"""What every route needs: the caller, the admin check, the RPC call to coreapp and the ``Idempotency-Key``."""

from __future__ import annotations

import time

from aiohttp import web

from shared.bus.rpc import Method, Rep, Req
from shared.errors import ApiError, ErrorCode
from shared.idempotency import HEADER, KEY_PATTERN, MAX_KEY_LENGTH, valid_key
from webapp.auth import Principal, unauthorized
from webapp.openapi import HeaderParam
from webapp.state import BUS_KEY, CLUSTER_KEY, METRICS_KEY, PRINCIPAL_KEY


def principal(request: web.Request) -> Principal:
    """The authenticated caller (set by the auth middleware for every bearer-authenticated route; an API-key
    request on ``/v1/health``, ``/v1/stats/*`` or ``/metrics`` has none).  A request that reaches a route needing
    one without it is refused as unauthenticated (401, 1005), never a 500."""
    if PRINCIPAL_KEY not in request:
        raise unauthorized("this endpoint needs a bearer token")
    return request[PRINCIPAL_KEY]


def require_admin(request: web.Request) -> Principal:
    """Only ROLE_ADMIN may go on; others get 403 / 1005 (reference §2.2)."""
    caller = principal(request)
    if not caller.is_admin:
        raise ApiError(ErrorCode.ACCESS_DENIED, "this endpoint requires ROLE_ADMIN")
    return caller


async def rpc(
    request: web.Request,
    method: Method[Req, Rep],
    payload: Req,
    timeout_s: float | None = None,
    *,
    node: str | None = None,
) -> Rep:
    """``bus.call`` timed into metrics (labelled with the method's name).  An ``ApiError`` from coreapp
    propagates to the envelope unchanged; a reply that does not fit the contract is ``ApiError`` 1014.
    Multiconnect: sent where ``webapp.cluster`` says (``node``: to that node, for its own figures)."""
    started = time.perf_counter()
    result = "ok"
    try:
        cluster = request.app.get(CLUSTER_KEY)
        route = None
        if cluster is not None:
            route = cluster.node_route(node) if node is not None else cluster.route(method, payload)
        return await request.app[BUS_KEY].call(method, payload, timeout_s, route)
    except ApiError as exc:
        result = str(exc.code.code)
        raise
    except Exception:
        result = "exception"
        raise
    finally:
        request.app[METRICS_KEY].rpc.labels(method.name, result).observe(time.perf_counter() - started)


IDEMPOTENCY_KEY = HeaderParam(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": KEY_PATTERN},
    description="Retry-safe request: the same key with the same request within 24 h answers the first success "
    "again and does nothing new; with another request it is 409 / 1004. 1 to 255 printable ASCII characters "
    "(else 400 / 1009), shared by every user of this install: use a fresh random value (a UUID) per request.",
)


def idempotency_key(request: web.Request) -> str | None:
    """The request's ``Idempotency-Key``, checked (400 / 1009 when malformed or repeated); ``None`` without one."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"send one {HEADER} header, not {len(values)}")
    if not valid_key(values[0]):
        raise ApiError(
            ErrorCode.INVALID_PARAMETER, f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return values[0]
