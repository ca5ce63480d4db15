"""RPC for the account beyond registration: two-step verification and shards (reference §2.1, §5.3).

Two-step lives on the network (``SetTwoStep``), which then asks for the PIN at every registration of the
number; this install keeps no copy of it.  Shards: this build runs one coreapp per number (no multiconnect),
so the shard count is always 1; asking for more is refused with 1009 and says why (1009 rather than 1011:
retrying cannot help).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from coreapp.api.handlers import Handler
from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.ready import LinkGetter, ready_link
from coreapp.chat.session import expect
from coreapp.storage.account import AccountStore
from shared.bus.base import Payload
from shared.errors import ApiError, ErrorCode
from shared.wire.frames import Ack, SetTwoStep

log = logging.getLogger("openprem.coreapp.account")

PIN = re.compile(r"^[0-9]{6}$")
SHARD_COUNTS = (1, 2, 4, 8, 16, 32)
SINGLE_SHARD = 1
NETWORK_TIMEOUT_S = 20.0


class AccountExtraApi:
    def __init__(self, accounts: AccountStore, link: LinkGetter) -> None:
        self._accounts = accounts
        self._link = link

    # --- two-step verification ------------------------------------------------------------------------------

    async def set_two_step(self, payload: Payload) -> Payload:
        pin = payload.get("pin")
        if pin is None or pin == "":
            raise ApiError(ErrorCode.MISSING_PARAMETER, "pin is required")
        if not isinstance(pin, str) or not PIN.match(pin):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "pin must be exactly 6 digits")
        await self._send(SetTwoStep(pin=pin), "enabled")
        return {}

    async def remove_two_step(self, _payload: Payload) -> Payload:
        await self._send(SetTwoStep(pin=None), "disabled")
        return {}

    async def _send(self, frame: SetTwoStep, what: str) -> None:
        link = ready_link(self._link, "two-step verification")
        try:
            expect(await link.request(frame, NETWORK_TIMEOUT_S), Ack)
        except ChatUnavailable as exc:
            log.warning("two-step verification not changed: %s", exc)
            raise ApiError(ErrorCode.NOT_READY, "the network did not answer") from None
        except ChatRemoteError as exc:
            raise ApiError(exc.error_code, exc.message) from None
        log.info("two-step verification %s", what)

    # --- shards ---------------------------------------------------------------------------------------------

    async def get_shards(self, _payload: Payload) -> Payload:
        return {"shards": SINGLE_SHARD}

    async def set_shards(self, payload: Payload) -> Payload:
        """Accept ``shards: 1`` for the registered number; other valid counts need multiconnect (1009)."""
        shards = payload.get("shards")
        cc, phone_number = payload.get("cc"), payload.get("phone_number")
        if shards is None or not cc or not phone_number:
            raise ApiError(ErrorCode.MISSING_PARAMETER, "cc, phone_number and shards are required")
        if not isinstance(shards, int) or isinstance(shards, bool) or shards not in SHARD_COUNTS:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "shards must be one of 1, 2, 4, 8, 16, 32")
        account = await self._accounts.get()
        if account is None or not account.registered:
            raise ApiError(ErrorCode.NOT_READY, "not registered: register the number first")
        if (account.cc, account.phone_number) != (cc, phone_number):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "cc and phone_number must be the registered number")
        if shards != SINGLE_SHARD:
            raise ApiError(
                ErrorCode.INVALID_PARAMETER,
                f"multiconnect is not enabled: this deployment runs a single coreapp, so shards must be 1 "
                f"(asked for {shards})",
            )
        return {"shards": SINGLE_SHARD}


def account_extra_routes(accounts: AccountStore, link: LinkGetter) -> Mapping[str, Handler]:
    """What ``CoreApp`` mounts with ``RpcApi.add_routes``."""
    api = AccountExtraApi(accounts, link)
    return {
        "account.set_two_step": api.set_two_step,
        "account.remove_two_step": api.remove_two_step,
        "account.get_shards": api.get_shards,
        "account.set_shards": api.set_shards,
    }
