"""RPC methods of the messages area (contracts §3): ``messages.send`` and ``messages.mark_read``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson

from coreapp.api.registry import RpcRegistry
from coreapp.chat.link import ConnState
from coreapp.models import IdempotencyClaim, MessageDirection, MessageStatus, NewMessage
from coreapp.scope import CurrentChat
from coreapp.services.accept import MessageAcceptor
from coreapp.services.compose import MessageComposer
from coreapp.services.mark_read import ReadMarker
from shared.bus.contract import messages
from shared.bus.rpc import Empty
from shared.errors import ApiError, ErrorCode
from shared.idempotency import key_digest
from shared.ids import MessageId, WaId, new_message_id

log = logging.getLogger("openprem.coreapp.api")

MAX_MESSAGE_ID_LENGTH = 128


class MessagesApi:
    def __init__(
        self,
        chat: CurrentChat,
        acceptor: MessageAcceptor,
        composer: MessageComposer,
        reader: ReadMarker,
        ensure_room: Callable[[], None],
    ) -> None:
        self._chat = chat
        self._ensure_room = ensure_room
        self._acceptor = acceptor
        self._composer = composer
        self._reader = reader

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(messages.SEND, self.send)
        registry.add(messages.MARK_READ, self.mark_read)

    async def send(self, request: messages.SendMessage) -> messages.SentMessage:
        """Check, compose and commit; the id is returned only once the row is stored (status ``accepted``).

        A key already on record is answered first, from the database alone: the retry of a send whose answer was
        lost gets its id even while the chat connection is down, and nothing is composed or sent again."""
        claim = None
        if isinstance(request.idempotency, messages.Idempotency):
            claim = IdempotencyClaim(key_digest(request.idempotency.key), request.idempotency.request_sha256)
            replayed = await self._acceptor.replay(claim)
            if replayed is not None:
                return messages.SentMessage(id=replayed)
        state, own = self._chat.state, self._chat.wa_id
        if state is not ConnState.READY or own is None:
            why = "not registered" if own is None else f"chat connection is {state.value if state else 'not started'}"
            log.warning("messages.send refused: service not ready (%s)", why)
            raise ApiError(ErrorCode.NOT_READY)
        self._ensure_room()  # 1016 while the disk guard reports a nearly full directory
        to = request.to
        if not to.isdigit() or not 5 <= len(to) <= 20:
            raise ApiError(ErrorCode.INVALID_USER, "recipient must be a wa_id (digits only)")
        if to == own:
            raise ApiError(ErrorCode.BAD_USER, "cannot send a message to yourself")
        content = await self._composer.compose(request)
        message = NewMessage(
            id=new_message_id(),
            direction=MessageDirection.OUT,
            peer=WaId(to),
            type=request.type,
            content=orjson.dumps(content).decode(),
            status=MessageStatus.ACCEPTED,
            timestamp=int(time.time()),
        )
        return messages.SentMessage(id=await self._acceptor.accept(message, claim))

    async def mark_read(self, request: messages.MarkRead) -> Empty:
        if len(request.id) > MAX_MESSAGE_ID_LENGTH:
            raise ApiError(ErrorCode.NOT_FOUND, f"no message {request.id}")
        await self._reader.mark_read(MessageId(request.id))
        return Empty()
