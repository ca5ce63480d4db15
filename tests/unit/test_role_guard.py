"""coreapp's last check before serving a call in multiconnect (``coreapp.ha.guard``): a master-only call on a
node that is not the primary is 1017, a send for a peer outside this owner's shard (or on a node without a shard,
or past its lease by its own clock) 1018, a node's own stats always; a write refused by the fence while the call
ran is the same refusal, and nothing reaches the handler it guards when the check fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from coreapp.ha.guard import RoleGuard
from coreapp.storage.leases import StaleEpoch
from shared.bus.contract.account import GET_SHARDS
from shared.bus.contract.messages import SEND, SendMessage
from shared.bus.contract.ops import STATS_APP, StatsQuery
from shared.bus.rpc import EMPTY
from shared.errors import ApiError
from shared.shards import ShardSlot, shard_of


@dataclass
class Node:
    primary: bool = False
    slot: ShardSlot | None = None
    valid: bool = True
    node_id: str = "core-1"

    def may_act(self) -> bool:
        return self.valid


class Handler:
    def __init__(self, fails: Exception | None = None) -> None:
        self.calls: list[str] = []
        self.fails = fails

    async def __call__(self, name: str, payload: bytes) -> bytes:
        self.calls.append(name)
        if self.fails is not None:
            raise self.fails
        return b"{}"


def peer_in(shard: int, shards: int) -> str:
    return next(p for p in (f"1202555{n:04d}" for n in range(1000)) if shard_of(p, shards) == shard)


async def refused(guard: RoleGuard, method: Any, request: Any) -> int:
    with pytest.raises(ApiError) as caught:
        await guard.handle(method.name, method.encode_request(request))
    return caught.value.code.code


async def test_master_calls_only_on_the_primary() -> None:
    handler = Handler()
    assert await refused(RoleGuard(handler, Node(primary=False)), GET_SHARDS, EMPTY) == 1017
    assert handler.calls == []
    await RoleGuard(handler, Node(primary=True)).handle(GET_SHARDS.name, b"{}")
    assert handler.calls == [GET_SHARDS.name]


async def test_sends_only_for_peers_of_the_owned_shard_and_only_while_the_lease_is_valid() -> None:
    handler = Handler()
    node = Node(slot=ShardSlot(1, 2))
    guard = RoleGuard(handler, node)
    assert await refused(guard, SEND, SendMessage(to=peer_in(0, 2))) == 1018
    mine = SendMessage(to=peer_in(1, 2))
    await guard.handle(SEND.name, SEND.encode_request(mine))
    node.valid = False  # stopped past its lease: its own clock says so
    assert await refused(guard, SEND, mine) == 1018
    assert await refused(RoleGuard(handler, Node()), SEND, mine) == 1018
    assert handler.calls == [SEND.name]


async def test_own_stats_anywhere_and_a_fenced_write_is_a_refusal() -> None:
    handler = Handler()
    await RoleGuard(handler, Node()).handle(STATS_APP.name, STATS_APP.encode_request(StatsQuery()))
    assert handler.calls == [STATS_APP.name]
    fenced = RoleGuard(Handler(StaleEpoch("lost")), Node(slot=ShardSlot(0, 1)))
    assert await refused(fenced, SEND, SendMessage(to=peer_in(0, 1))) == 1018
    master = RoleGuard(Handler(StaleEpoch("lost")), Node(primary=True))
    assert await refused(master, GET_SHARDS, EMPTY) == 1017
