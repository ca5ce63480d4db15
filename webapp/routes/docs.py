"""``GET /v1/openapi.json``: the generated OpenAPI document (``webapp.openapi``).

Public, like the original's published reference: it is read-only, holds no data and no secrets, and clients
and contract tests need it before they have a token.
"""

from __future__ import annotations

from aiohttp import web

from webapp.openapi import OPENAPI_PATH, doc, openapi_handler

routes = web.RouteTableDef()


@routes.get(OPENAPI_PATH)
@doc(
    "This OpenAPI document",
    responses={},
    raw_responses={200: {"application/json": {"type": "object"}}},
    public=True,
    tags=["meta"],
)
async def openapi(request: web.Request) -> web.Response:
    return await openapi_handler(request)
