"""Which requests this node may serve now (multiconnect): the others are refused with 1017 / 1018 at once.

Webapps route each call by the node states (``webapp.cluster``), so a refusal here means the call raced a role
change: the client retries (reference §5.2).  The contract says where each method belongs (``Method.placement``);
a write refused by the fence while the call ran (``StaleEpoch``) is the same refusal.
"""

from __future__ import annotations

from typing import Any

from coreapp.ha.node import HaNode
from coreapp.storage.leases import StaleEpoch
from shared.bus.base import RawHandler
from shared.bus.contract import BY_NAME
from shared.bus.rpc import Method, Placement
from shared.errors import ApiError, ErrorCode


class RoleGuard:
    def __init__(self, handler: RawHandler, node: HaNode) -> None:
        self._handler = handler
        self._node = node

    async def handle(self, name: str, payload: bytes) -> bytes:
        method = BY_NAME.get(name)
        placement = method.placement if method is not None else Placement.MASTER
        if method is not None:
            self._check(method, payload)
        try:
            return await self._handler(name, payload)
        except StaleEpoch:
            raise self._refusal(placement, "this node lost its role while serving the call") from None

    def _check(self, method: Method[Any, Any], payload: bytes) -> None:
        node = self._node
        if method.placement is Placement.NODE:
            return
        if method.placement is Placement.MASTER:
            if not node.primary:
                raise self._refusal(Placement.MASTER, f"{node.node_id} is not the primary master")
            return
        slot = node.slot
        if slot is None or not node.may_act():
            raise self._refusal(method.placement, f"{node.node_id} owns no shard now")
        if method.placement is Placement.RECIPIENT and method.recipient is not None:
            try:
                request = method.decode_request(payload)
            except ApiError:
                return  # the handler answers the malformed request the usual way
            peer = method.recipient(request)
            if peer and not slot.serves(peer):
                raise self._refusal(method.placement, f"{peer} is not in shard {slot.shard} of {slot.shards}")

    @staticmethod
    def _refusal(placement: Placement, details: str) -> ApiError:
        code = ErrorCode.NOT_PRIMARY_MASTER if placement is Placement.MASTER else ErrorCode.NOT_PRIMARY_COREAPP
        return ApiError(code, f"{details}; retry")
