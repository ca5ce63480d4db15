"""``POST /v1/messages``: validate, hand to coreapp, answer with the id of the stored message.

201, as in the On-Prem docs (the community mocks answer 200): coreapp replies only after the message row
is committed, so the id handed out is a message that exists.
"""

from __future__ import annotations

from aiohttp import web

from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok, read_json
from webapp.routes.common import rpc
from webapp.schemas.messages import parse_message, to_rpc_payload

routes = web.RouteTableDef()


@routes.post("/v1/messages")
async def send(request: web.Request) -> web.Response:
    message = parse_message(await read_json(request))
    result = await rpc(request, "messages.send", to_rpc_payload(message))
    message_id = result.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise ApiError(ErrorCode.GENERIC, "coreapp returned no message id")
    return ok(request, {"messages": [{"id": message_id}]}, status=201)
