"""RPC handlers (contracts §3): the methods webapp calls over the bus, validated and turned into service calls."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.exc import DBAPIError

from coreapp.chat.link import ConnState
from coreapp.models import GatewayStatus
from coreapp.services.registration import RegistrationService
from coreapp.storage.settings import SettingsStore
from shared.appsettings import ApplicationSettings
from shared.bus.base import Payload
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId

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
        critical_errors: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self._view = view
        self._registration = registration
        self._settings = settings
        self._critical_errors = critical_errors
        self._routes: dict[str, Handler] = {
            "health.get": self.health,
            "account.register": self.register,
            "account.verify": self.verify,
            "settings.get_application": self.get_application,
            "settings.patch_application": self.patch_application,
            "settings.reset_application": self.reset_application,
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
        try:
            return await route(payload)
        except DBAPIError as exc:
            # The database is down or restarting (a failover, a restart): the On-Prem code for it, not 1000.
            first = str(exc.orig if exc.orig is not None else exc).splitlines()[0:1]
            log.warning("%s failed on a database error: %s", method, first[0] if first else type(exc).__name__)
            raise ApiError(ErrorCode.DATABASE_ERROR) from exc

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
        """``gateway_status``, plus ``errors`` (``[{"code","title","details"}]``) only while a critical condition
        such as a nearly full disk holds (DESIGN §3); webapp passes them through inside ``health``."""
        answer: Payload = {"gateway_status": self.gateway_status().value}
        errors = self._critical_errors() if self._critical_errors is not None else []
        if errors:
            answer["errors"] = errors
        return answer

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

    def _application(self, value: ApplicationSettings) -> Payload:
        """The document plus the read-only ``wa_id`` (reference §2.8), once registered."""
        document = value.model_dump(mode="json")
        wa_id = self._view.own_wa_id()
        if wa_id is not None:
            document["wa_id"] = wa_id
        return {"application": document}

    async def get_application(self, _payload: Payload) -> Payload:
        return self._application(await self._settings.get_application())

    async def patch_application(self, payload: Payload) -> Payload:
        partial = payload.get("application")
        if not isinstance(partial, dict):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "application must be an object")
        return self._application(await self._settings.patch_application(partial))

    async def reset_application(self, _payload: Payload) -> Payload:
        return self._application(await self._settings.reset_application())


def _required_str(payload: Payload, key: str) -> str:
    value: Any = payload.get(key)
    if value is None or value == "":
        raise ApiError(ErrorCode.MISSING_PARAMETER, f"{key} is required")
    if not isinstance(value, str):
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"{key} must be a string")
    return value
