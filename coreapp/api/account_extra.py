"""RPC for the account beyond registration: two-step verification and shards (reference §2.1, §5.3).

Two-step lives on the network (``SetTwoStep``), which then asks for the PIN at every registration of the
number; this install keeps no copy of it.  Shards: without multiconnect one coreapp serves the number, so the
count is always 1 and asking for more is refused with 1009, saying why (retrying cannot help); with it, the
primary master changes the count (``coreapp.ha.reshard``; 403 while a change is under way).
"""

from __future__ import annotations

import logging

from coreapp.api.registry import RpcRegistry
from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.ready import LinkSource, ready_link
from coreapp.chat.session import expect
from coreapp.ha.reshard import Resharder
from coreapp.storage.account import AccountStore
from coreapp.storage.shard_map import ShardMapStore
from shared.bus.contract import account
from shared.bus.rpc import Empty
from shared.errors import ApiError, ErrorCode
from shared.shards import SHARD_COUNTS
from shared.wire.frames import Ack, SetTwoStep

log = logging.getLogger("openprem.coreapp.account")

SINGLE_SHARD = 1
NETWORK_TIMEOUT_S = 20.0


class AccountExtraApi:
    def __init__(
        self,
        accounts: AccountStore,
        chat: LinkSource,
        *,
        maps: ShardMapStore | None = None,
        resharder: Resharder | None = None,
    ) -> None:
        """``maps`` and ``resharder``: multiconnect (the count is the shard map's)."""
        self._accounts = accounts
        self._chat = chat
        self._maps = maps
        self._resharder = resharder

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(account.SET_TWO_STEP, self.set_two_step)
        registry.add(account.REMOVE_TWO_STEP, self.remove_two_step)
        registry.add(account.GET_SHARDS, self.get_shards)
        registry.add(account.SET_SHARDS, self.set_shards)

    # --- two-step verification ------------------------------------------------------------------------------

    async def set_two_step(self, request: account.TwoStep) -> Empty:
        await self._send(SetTwoStep(pin=request.pin), "enabled")
        return Empty()

    async def remove_two_step(self, _request: Empty) -> Empty:
        await self._send(SetTwoStep(pin=None), "disabled")
        return Empty()

    async def _send(self, frame: SetTwoStep, what: str) -> None:
        link = ready_link(self._chat, "two-step verification")
        try:
            expect(await link.request(frame, NETWORK_TIMEOUT_S), Ack)
        except ChatUnavailable as exc:
            log.warning("two-step verification not changed: %s", exc)
            raise ApiError(ErrorCode.NOT_READY, "the network did not answer") from None
        except ChatRemoteError as exc:
            raise ApiError(exc.error_code, exc.message) from None
        log.info("two-step verification %s", what)

    # --- shards ---------------------------------------------------------------------------------------------

    async def get_shards(self, _request: Empty) -> account.Shards:
        if self._maps is not None:
            return account.Shards(shards=(await self._maps.get()).shards)
        return account.Shards(shards=SINGLE_SHARD)

    async def set_shards(self, request: account.SetShards) -> account.Shards:
        """Accept ``shards: 1`` for the registered number; other valid counts need multiconnect (1009)."""
        shards = request.shards
        if shards not in SHARD_COUNTS:
            raise ApiError(ErrorCode.INVALID_PARAMETER, account.SHARDS_HINT)
        registered = await self._accounts.get()
        if registered is None or not registered.registered:
            raise ApiError(ErrorCode.NOT_READY, "not registered: register the number first")
        if (registered.cc, registered.phone_number) != (request.cc, request.phone_number):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "cc and phone_number must be the registered number")
        if self._resharder is not None:
            return account.Shards(shards=await self._resharder.change(shards))
        if shards != SINGLE_SHARD:
            raise ApiError(
                ErrorCode.INVALID_PARAMETER,
                f"multiconnect is not enabled: this deployment runs a single coreapp, so shards must be 1 "
                f"(asked for {shards})",
            )
        return account.Shards(shards=SINGLE_SHARD)
