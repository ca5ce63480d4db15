"""RPC handlers of health, registration and the application settings (contracts §3).

Each ``coreapp/api`` module holds one API area's handlers and mounts them on the ``RpcRegistry`` with its
``mount`` method; the composition root builds the areas with what they need.  Requests arrive decoded and
checked against the contract's structs, so a handler does only what a struct cannot: the On-Prem rules.
"""

from __future__ import annotations

from collections.abc import Callable

from coreapp.api.registry import RpcRegistry
from coreapp.scope import CurrentChat
from coreapp.services.registration import RegistrationService
from coreapp.storage.settings import SettingsStore
from shared.appsettings import ApplicationSettings
from shared.bus.contract import account, health, settings
from shared.bus.contract.health import CriticalError
from shared.bus.rpc import Empty


class CoreApi:
    def __init__(
        self,
        chat: CurrentChat,
        registration: RegistrationService,
        settings_store: SettingsStore,
        critical_errors: Callable[[], list[CriticalError]],
    ) -> None:
        self._chat = chat
        self._registration = registration
        self._settings = settings_store
        self._critical_errors = critical_errors

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(health.HEALTH, self.health)
        registry.add(account.REGISTER, self.register)
        registry.add(account.VERIFY, self.verify)
        registry.add(settings.GET_APPLICATION, self.get_application)
        registry.add(settings.PATCH_APPLICATION, self.patch_application)
        registry.add(settings.RESET_APPLICATION, self.reset_application)

    # --- health ---------------------------------------------------------------------------------------------

    async def health(self, _request: Empty) -> health.Health:
        """``gateway_status``, plus ``errors`` only while a critical condition such as a nearly full disk holds
        (DESIGN §3); webapp passes them through inside ``health``."""
        return health.Health(gateway_status=self._chat.gateway_status(), errors=self._critical_errors())

    # --- account --------------------------------------------------------------------------------------------

    async def register(self, request: account.Register) -> account.Registration:
        return await self._registration.register(
            request.cc, request.phone_number, request.method, request.cert, request.pin
        )

    async def verify(self, request: account.Verify) -> Empty:
        await self._registration.verify(request.code)
        return Empty()

    # --- settings -------------------------------------------------------------------------------------------

    def _application(self, value: ApplicationSettings) -> settings.Application:
        """The document plus the read-only ``wa_id`` (reference §2.8), once registered."""
        document = value.model_dump(mode="json")
        wa_id = self._chat.wa_id
        if wa_id is not None:
            document["wa_id"] = wa_id
        return settings.Application(application=document)

    async def get_application(self, _request: Empty) -> settings.Application:
        return self._application(await self._settings.get_application())

    async def patch_application(self, request: settings.PatchApplication) -> settings.Application:
        return self._application(await self._settings.patch_application(request.application))

    async def reset_application(self, _request: Empty) -> settings.Application:
        return self._application(await self._settings.reset_application())
