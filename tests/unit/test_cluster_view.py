"""webapp's view of a multiconnect deployment (``webapp.cluster``): where each call goes, from the node states,
and what ``/v1/health`` says; and the lease timing the On-Prem heartbeat settings give (``coreapp.ha.node``)."""

from __future__ import annotations

import pytest

from coreapp.ha.node import lease_timing
from shared.bus.contract.account import GET_SHARDS
from shared.bus.contract.contacts import CHECK, CheckContacts
from shared.bus.contract.messages import SEND, SendMessage
from shared.bus.contract.ops import STATS_APP, StatsQuery
from shared.bus.rpc import EMPTY
from shared.config import HaSettings
from shared.errors import ApiError, ErrorCode
from shared.shards import shard_of
from webapp.cluster import SILENT_AFTER_S, ClusterView


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def owner(shard: int, shards: int, epoch: int = 1) -> dict[str, object]:
    return {"state": "up", "role": "coreapp", "gateway_status": "connected", "epoch": epoch, "shard": shard,
            "shards": shards}  # fmt: skip


def primary(shards: int, epoch: int = 1) -> dict[str, object]:
    return {"state": "up", "role": "primary_master", "gateway_status": "disconnected", "epoch": epoch,
            "shards": shards, "changing": False}  # fmt: skip


def peer_in(shard: int, shards: int) -> str:
    return next(p for p in (f"1202555{n:04d}" for n in range(1000)) if shard_of(p, shards) == shard)


def code(exc: pytest.ExceptionInfo[ApiError]) -> int:
    return exc.value.code.code


def test_sends_go_to_the_recipients_shard_and_master_calls_to_the_primary() -> None:
    view = ClusterView()
    view.update("master-1", primary(2))
    view.update("core-1", owner(0, 2))
    view.update("core-2", owner(1, 2))
    for shard in (0, 1):
        request = SendMessage(to=peer_in(shard, 2))
        assert view.route(SEND, request) == f"shard/{shard}"
    assert view.route(GET_SHARDS, EMPTY) == "master"
    assert {view.route(CHECK, CheckContacts(contacts=["+1"])) for _ in range(4)} == {"shard/0", "shard/1"}
    assert view.route(STATS_APP, StatsQuery()) == "master"
    assert view.node_route("core-2") == "node/core-2"


def test_no_owner_or_no_primary_is_answered_at_once() -> None:
    view = ClusterView()
    view.update("core-1", owner(0, 2))
    with pytest.raises(ApiError) as no_primary:
        view.route(GET_SHARDS, EMPTY)
    assert code(no_primary) == ErrorCode.NOT_PRIMARY_MASTER.code == 1017
    view.update("master-1", primary(2))
    with pytest.raises(ApiError) as no_owner:
        view.route(SEND, SendMessage(to=peer_in(1, 2)))
    assert code(no_owner) == 1018
    view.update("core-1", None)  # its last will
    with pytest.raises(ApiError) as nobody:
        view.route(CHECK, CheckContacts(contacts=["+1"]))
    assert code(nobody) == 1018
    with pytest.raises(ApiError) as unknown:
        view.node_route("core-9")
    assert code(unknown) == 1009


def test_a_silent_node_is_not_routed_to_and_the_newer_epoch_wins() -> None:
    clock = Clock()
    view = ClusterView(clock)
    view.update("master-1", primary(1, epoch=1))
    view.update("core-1", owner(0, 1, epoch=1))
    clock.now += SILENT_AFTER_S + 0.1  # both stopped (SIGSTOP): the broker still holds their states
    view.update("master-2", primary(1, epoch=2))
    with pytest.raises(ApiError):
        view.route(SEND, SendMessage(to=peer_in(0, 1)))
    view.update("core-2", owner(0, 1, epoch=2))
    assert view.route(SEND, SendMessage(to=peer_in(0, 1))) == "shard/0"
    health = view.health()
    assert health["master-1"] == {"gateway_status": "disconnected", "role": "secondary_master"}
    assert health["master-2"]["role"] == "primary_master"
    assert health["core-1"]["gateway_status"] == "disconnected"
    assert health["core-2"] == {"gateway_status": "connected", "role": "coreapp"}
    # Both heard from again (resumed): the old epoch still does not own the shard.
    view.update("core-1", owner(0, 1, epoch=1))
    assert view.health()["core-1"]["gateway_status"] == "disconnected"


def test_the_shard_count_is_the_primarys_else_the_newest_owners() -> None:
    view = ClusterView()
    view.update("core-1", owner(0, 2, epoch=3))
    view.update("core-2", owner(0, 1, epoch=1))
    assert view.shards() == 2
    view.update("master-1", primary(4))
    assert view.shards() == 4


def test_heartbeat_and_unhealthy_interval_set_the_lease_timing() -> None:
    env = HaSettings(lease_ttl_s=6, renew_every_s=1.5, margin_s=1.5)
    assert (lease_timing(env, None).ttl_s, lease_timing(env, None).renew_every_s) == (6, 1.5)
    timing = lease_timing(env, {"heartbeat_interval": 5, "unhealthy_interval": 30})
    assert (timing.ttl_s, timing.renew_every_s, timing.margin_s) == (30, 5, 1.5)
    short = lease_timing(env, {"unhealthy_interval": 4})
    assert (short.ttl_s, short.renew_every_s, short.margin_s) == (4, 1.5, 1.0)
    nonsense = lease_timing(env, {"heartbeat_interval": 10, "unhealthy_interval": 5})
    assert (nonsense.ttl_s, nonsense.renew_every_s) == (6, 1.5), "no renewal fits: the environment's timing"


def test_a_gone_node_gives_back_only_the_routes_nobody_else_serves() -> None:
    view = ClusterView()
    view.update("master-1", primary(2))
    view.update("core-1", owner(0, 2, epoch=1))
    view.update("core-2", owner(1, 2))
    assert view.update("core-1", owner(0, 2, epoch=1)) == []  # still there
    assert view.update("core-1", None) == ["shard/0", "node/core-1"]
    view.update("core-3", owner(1, 2, epoch=2))  # took shard 1 over while core-2 was stopped
    assert view.update("core-2", None) == ["node/core-2"], "shard/1 is core-3's now: its requests are not abandoned"
    assert view.update("core-9", None) == []
