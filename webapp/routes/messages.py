"""``POST /v1/messages`` (send) and ``PUT /v1/messages/{id}`` (mark an inbound message as read).

201 for a send, as in the On-Prem docs (the community mocks answer 200): coreapp replies only after the
message row is committed, so the id handed out is a message that exists.  Mark-as-read answers 200 once the
network took the read receipt.

A send may carry an ``Idempotency-Key`` (``shared.idempotency``): webapp checks it and fingerprints the validated
body, coreapp stores the key in the transaction that stores the message, so a retry after a lost answer (a
webapp killed, a timeout) gets the same id and the phone gets the message once.
"""

from __future__ import annotations

import re

from aiohttp import web

from shared.bus.contract import messages as contract
from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok, read_json
from webapp.openapi import doc
from webapp.routes.common import IDEMPOTENCY_KEY, idempotency_key, rpc
from webapp.schemas.messages import MarkRead, OutboundMessage, parse_mark_read, parse_message, send_request
from webapp.schemas.responses import MessagesResponse

routes = web.RouteTableDef()

_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.=+/-]{1,128}$")


@routes.post("/v1/messages")
@doc(
    "Send a message",
    request=OutboundMessage,
    responses={201: MessagesResponse},
    errors=(404, 409),
    headers=[IDEMPOTENCY_KEY],
    rpc=True,
    tags=["messages"],
)
async def send(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    message = parse_message(await read_json(request))
    result = await rpc(request, contract.SEND, send_request(message, key))
    return ok(request, {"messages": [{"id": result.id}]}, status=201)


@routes.put("/v1/messages/{message_id}")
@doc("Mark an inbound message as read", request=MarkRead, rpc=True, tags=["messages"])
async def mark_read(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    if not _MESSAGE_ID.match(message_id):
        raise ApiError(ErrorCode.NOT_FOUND, f"no message {message_id!r}")
    parse_mark_read(await read_json(request))
    await rpc(request, contract.MARK_READ, contract.MarkRead(id=message_id))
    return ok(request)
