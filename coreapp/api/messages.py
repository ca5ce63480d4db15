"""RPC methods of the messages area (contracts §3): ``messages.send`` and ``messages.mark_read``.

Mounted with ``RpcApi.add_routes``; the composition root builds it with ``messages_routes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson

from coreapp.api.handlers import CoreView, Handler
from coreapp.chat.link import ChatLink, ConnState
from coreapp.models import MessageDirection, MessageStatus, NewMessage
from coreapp.services.accept import MessageAcceptor
from coreapp.services.compose import MediaPreparer, MessageComposer
from coreapp.services.keys import IdentityAcks
from coreapp.services.mark_read import ReadMarker
from coreapp.storage.messages import MessageStore
from coreapp.storage.templates import TemplateStore
from shared.bus.base import Payload
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.ids import MessageId, WaId, new_message_id

log = logging.getLogger("openprem.coreapp.api")

MAX_MESSAGE_ID_LENGTH = 128


class MessagesApi:
    def __init__(
        self,
        view: CoreView,
        acceptor: MessageAcceptor,
        composer: MessageComposer,
        reader: ReadMarker,
        ensure_room: Callable[[], None] | None = None,
    ) -> None:
        self._view = view
        self._ensure_room = ensure_room
        self._acceptor = acceptor
        self._composer = composer
        self._reader = reader

    def routes(self) -> dict[str, Handler]:
        return {"messages.send": self.send, "messages.mark_read": self.mark_read}

    async def send(self, payload: Payload) -> Payload:
        """Check, compose and commit; the id is returned only once the row is stored (status ``accepted``)."""
        state = self._view.chat_state()
        own = self._view.own_wa_id()
        if state is not ConnState.READY or own is None:
            why = "not registered" if own is None else f"chat connection is {state.value if state else 'not started'}"
            log.warning("messages.send refused: service not ready (%s)", why)
            raise ApiError(ErrorCode.NOT_READY)
        if self._ensure_room is not None:
            self._ensure_room()  # 1016 while the disk guard reports a nearly full directory
        to = payload.get("to")
        if not isinstance(to, str) or not to.isdigit() or not 5 <= len(to) <= 20:
            raise ApiError(ErrorCode.INVALID_USER, "recipient must be a wa_id (digits only)")
        if to == own:
            raise ApiError(ErrorCode.BAD_USER, "cannot send a message to yourself")
        message_type, content = await self._composer.compose(payload)
        message = NewMessage(
            id=new_message_id(),
            direction=MessageDirection.OUT,
            peer=WaId(to),
            type=message_type,
            content=orjson.dumps(content).decode(),
            status=MessageStatus.ACCEPTED,
            timestamp=int(time.time()),
        )
        return {"id": await self._acceptor.accept(message)}

    async def mark_read(self, payload: Payload) -> Payload:
        message_id = payload.get("id")
        if not isinstance(message_id, str) or not message_id:
            raise ApiError(ErrorCode.MISSING_PARAMETER, "id is required")
        if len(message_id) > MAX_MESSAGE_ID_LENGTH:
            raise ApiError(ErrorCode.NOT_FOUND, f"no message {message_id}")
        await self._reader.mark_read(MessageId(message_id))
        return {}


def messages_routes(
    *,
    view: CoreView,
    db: Database,
    messages: MessageStore,
    templates: TemplateStore,
    acceptor: MessageAcceptor,
    link: Callable[[], ChatLink | None],
    media: Callable[[], MediaPreparer | None],
    identities: IdentityAcks,
    ensure_room: Callable[[], None] | None = None,
) -> dict[str, Handler]:
    """The messages area's RPC methods, wired for ``RpcApi.add_routes``."""
    composer = MessageComposer(templates, media, identity_check=identities.check_send)
    return MessagesApi(view, acceptor, composer, ReadMarker(db, messages, link), ensure_room).routes()
