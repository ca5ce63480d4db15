"""RPC handlers (contracts §3): the methods webapp calls over the bus, validated and turned into service calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from coreapp.chat.link import ConnState
from coreapp.models import GatewayStatus, MessageDirection, MessageStatus, NewMessage
from coreapp.services.accept import MessageAcceptor
from coreapp.services.registration import RegistrationService
from coreapp.storage.settings import SettingsStore
from shared.bus.base import Payload
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId, new_message_id

log = logging.getLogger("openprem.coreapp.api")

Handler = Callable[[Payload], Awaitable[Payload]]


class CoreView:
    """What the handlers need to know about the running app (kept as callables so the app can swap the chat
    connection after a registration)."""

    def __init__(self, own_wa_id: Callable[[], WaId | None], chat_state: Callable[[], ConnState | None]) -> None:
        self.own_wa_id = own_wa_id
        self.chat_state = chat_state


class RpcApi:
    def __init__(
        self,
        view: CoreView,
        registration: RegistrationService,
        settings: SettingsStore,
        acceptor: MessageAcceptor,
    ) -> None:
        self._view = view
        self._registration = registration
        self._settings = settings
        self._acceptor = acceptor
        self._routes: dict[str, Handler] = {
            "health.get": self.health,
            "account.register": self.register,
            "account.verify": self.verify,
            "settings.get_application": self.get_application,
            "settings.patch_application": self.patch_application,
            "settings.reset_application": self.reset_application,
            "messages.send": self.send_message,
        }

    def add_routes(self, routes: Mapping[str, Handler]) -> None:
        """Mount another area's methods (each area keeps its handlers in its own ``coreapp/api`` module)."""
        clash = set(routes) & set(self._routes)
        if clash:
            raise ValueError(f"RPC methods registered twice: {sorted(clash)}")
        self._routes.update(routes)

    async def handle(self, method: str, payload: Payload) -> Payload:
        """The bus handler: route ``method``; unknown methods are ``NOT_FOUND``."""
        route = self._routes.get(method)
        if route is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"unknown method {method}")
        return await route(payload)

    # --- health ---------------------------------------------------------------------------------------------

    def gateway_status(self) -> GatewayStatus:
        if self._view.own_wa_id() is None:
            return GatewayStatus.UNREGISTERED
        state = self._view.chat_state()
        if state is None or state is ConnState.DISCONNECTED:
            return GatewayStatus.DISCONNECTED
        if state is ConnState.READY:
            return GatewayStatus.CONNECTED
        return GatewayStatus.CONNECTING

    async def health(self, _payload: Payload) -> Payload:
        return {"gateway_status": self.gateway_status().value}

    # --- account --------------------------------------------------------------------------------------------

    async def register(self, payload: Payload) -> Payload:
        cc = _required_str(payload, "cc")
        phone_number = _required_str(payload, "phone_number")
        method = _required_str(payload, "method")
        cert = _required_str(payload, "cert")
        pin = payload.get("pin")
        if method not in ("sms", "voice"):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "method must be sms or voice")
        if pin is not None and not isinstance(pin, str):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "pin must be a string")
        return await self._registration.register(cc, phone_number, method, cert, pin)

    async def verify(self, payload: Payload) -> Payload:
        return await self._registration.verify(_required_str(payload, "code"))

    # --- settings -------------------------------------------------------------------------------------------

    async def get_application(self, _payload: Payload) -> Payload:
        return {"application": (await self._settings.get_application()).model_dump(mode="json")}

    async def patch_application(self, payload: Payload) -> Payload:
        partial = payload.get("application")
        if not isinstance(partial, dict):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "application must be an object")
        return {"application": (await self._settings.patch_application(partial)).model_dump(mode="json")}

    async def reset_application(self, _payload: Payload) -> Payload:
        return {"application": (await self._settings.reset_application()).model_dump(mode="json")}

    # --- messages -------------------------------------------------------------------------------------------

    async def send_message(self, payload: Payload) -> Payload:
        state = self._view.chat_state()
        own = self._view.own_wa_id()
        if state is not ConnState.READY or own is None:
            why = "not registered" if own is None else f"chat connection is {state.value if state else 'not started'}"
            log.warning("messages.send refused: service not ready (%s)", why)
            raise ApiError(ErrorCode.NOT_READY)
        to = payload.get("to")
        if not isinstance(to, str) or not to.isdigit() or not 5 <= len(to) <= 20:
            raise ApiError(ErrorCode.INVALID_USER, "recipient must be a wa_id (digits only)")
        if to == own:
            raise ApiError(ErrorCode.BAD_USER, "cannot send a message to yourself")
        message_type = payload.get("type", "text")
        if message_type != "text":
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"message type {message_type!r} is not supported yet")
        text = payload.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str):
            raise ApiError(ErrorCode.MISSING_PARAMETER, "text.body is required")
        content = {"type": "text", "text": {"body": text["body"]}, "preview_url": bool(payload.get("preview_url"))}
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


def _required_str(payload: Payload, key: str) -> str:
    value: Any = payload.get(key)
    if value is None or value == "":
        raise ApiError(ErrorCode.MISSING_PARAMETER, f"{key} is required")
    if not isinstance(value, str):
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"{key} must be a string")
    return value
