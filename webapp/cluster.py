"""Where each call goes in a multiconnect deployment, from the nodes' retained states on the bus (reference §5).

Every coreapp node publishes its state (``coreapp.ha.node``): role, epoch, and for a shard's owner the shard and
count; the primary master also the shard count and whether a change is under way.  A node that dies leaves its
last will (``gone``).  From that this view answers, without asking anyone:

- a master-only call goes to the ``master`` route, or 1017 at once when no primary master is known;
- a send (and a contact's identity) goes to the route of its recipient's shard (``shared.shards.shard_of``), or
  1018 at once when that shard has no owner (failover, or a change of the shard count under way);
- a call that needs the network connection but no particular peer goes to any shard's owner (round robin).

The states are hints: the node that receives a call checks its lease before serving it, and answers 1017 / 1018
when it lost it meanwhile, so a stale view costs a retry, never a wrong write.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.bus.base import Payload
from shared.bus.contract.health import NodeRole
from shared.bus.rpc import Method, Placement
from shared.errors import ApiError, ErrorCode
from shared.shards import SHARD_COUNTS, shard_of

log = logging.getLogger("openprem.webapp.cluster")

MASTER_ROUTE = "master"
SILENT_AFTER_S = 4.0
"""A node publishes its state every second; one not heard from for this long is not routed to (a stopped
process keeps its broker connection, and so its retained state, until the broker's keepalive runs out)."""
PRIMARY = NodeRole.PRIMARY_MASTER.value


@dataclass(frozen=True, slots=True)
class NodeState:
    node: str
    role: str
    gateway_status: str
    epoch: int | None
    shard: int | None
    shards: int | None
    changing: bool

    @classmethod
    def parse(cls, node: str, state: Payload) -> NodeState:
        def number(key: str) -> int | None:
            value = state.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(
            node=node,
            role=str(state.get("role", "coreapp")),
            gateway_status=str(state.get("gateway_status", "disconnected")),
            epoch=number("epoch"),
            shard=number("shard"),
            shards=number("shards"),
            changing=bool(state.get("changing", False)),
        )


class ClusterView:
    """The nodes as their retained states describe them (``Bus.watch_nodes`` feeds ``update``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._all: dict[str, NodeState] = {}
        self._seen: dict[str, float] = {}
        self._clock = clock
        self._turn = itertools.count()

    def update(self, node: str, state: Payload | None) -> list[str]:
        """Take a node's state in; the routes it served if it is gone now (what was sent there waits in vain)."""
        if state is None or "role" not in state:  # gone, or a webapp's own state
            gone = self._all.pop(node, None)
            self._seen.pop(node, None)
            if gone is None:
                return []
            log.info("node %s is gone", node)
            # Requests on a route another node serves now are that node's: only the orphaned ones are abandoned.
            served = {route for other in self._nodes.values() for route in self._routes_of(other)}
            return [route for route in (*self._routes_of(gone), f"node/{node}") if route not in served]
        parsed = NodeState.parse(node, state)
        if self._all.get(node) != parsed:
            log.info("node %s: %s%s", node, parsed.role, "" if parsed.shard is None else f" of shard {parsed.shard}")
        self._all[node] = parsed
        self._seen[node] = self._clock()
        return []

    @staticmethod
    def _routes_of(state: NodeState) -> list[str]:
        if state.role == PRIMARY:
            return [MASTER_ROUTE]
        return [f"shard/{state.shard}"] if state.shard is not None else []
    @property
    def _nodes(self) -> dict[str, NodeState]:
        """The nodes heard from lately: the ones calls may go to."""
        now = self._clock()
        return {name: state for name, state in self._all.items() if now - self._seen[name] < SILENT_AFTER_S}

    # --- routing ----------------------------------------------------------------------------------------------

    def route(self, method: Method[Any, Any], request: Any) -> str:
        """The route ``method`` must go to now, or the On-Prem error for "nobody serves it"."""
        if method.placement is Placement.NODE:
            return self.node_route(None)
        if method.placement is Placement.MASTER:
            if self._primary() is None:
                raise ApiError(ErrorCode.NOT_PRIMARY_MASTER, "no primary master is up now; retry")
            return MASTER_ROUTE
        shards = self.shards()
        owners = self._owners(shards)
        if method.placement is Placement.RECIPIENT and method.recipient is not None:
            shard = shard_of(method.recipient(request), shards)
            if shard not in owners:
                raise ApiError(ErrorCode.NOT_PRIMARY_COREAPP, f"shard {shard} of {shards} has no owner now; retry")
            return f"shard/{shard}"
        if not owners:
            raise ApiError(ErrorCode.NOT_PRIMARY_COREAPP, "no shard has an owner now; retry")
        ordered = sorted(owners)
        return f"shard/{ordered[next(self._turn) % len(ordered)]}"

    def node_route(self, node: str | None) -> str:
        """The route of ``node`` (1009 when no such node is up); ``None``: the primary master."""
        if node is None:
            if self._primary() is None:
                raise ApiError(ErrorCode.NOT_PRIMARY_MASTER, "no primary master is up now; retry")
            return MASTER_ROUTE
        if node not in self._nodes:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"node: no node {node!r} is up (see /v1/health)")
        return f"node/{node}"

    def shards(self) -> int:
        """The shard count: the primary master's, else the one the newest owners serve (masters may all be down
        while the coreapps keep serving, reference §5.1)."""
        primary = self._primary()
        if primary is not None and primary.shards in SHARD_COUNTS:
            return primary.shards
        counts = [n for n in self._nodes.values() if n.shard is not None and n.shards in SHARD_COUNTS]
        if not counts:
            return 1
        newest = max(counts, key=lambda n: n.epoch or 0)
        return newest.shards or 1

    def _primary(self) -> NodeState | None:
        primaries = [n for n in self._nodes.values() if n.role == PRIMARY]
        return max(primaries, key=lambda n: n.epoch or 0) if primaries else None

    def _owners(self, shards: int) -> dict[int, NodeState]:
        """Shard -> its owner (the highest epoch, should two states overlap during a take-over)."""
        owners: dict[int, NodeState] = {}
        for state in self._nodes.values():
            if state.shard is None or state.shards != shards:
                continue
            held = owners.get(state.shard)
            if held is None or (state.epoch or 0) > (held.epoch or 0):
                owners[state.shard] = state
        return owners

    # --- health -----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, dict[str, str]]:
        """``/v1/health`` in the HA / multiconnect shape: every node with its gateway status and role.

        A node silent for ``SILENT_AFTER_S`` is listed ``disconnected``; of two that claim one role (a stopped
        primary or owner and its successor, until the broker drops the first), only the newer epoch keeps it."""
        live = self._nodes
        primary = self._primary()
        owners = self._owners(self.shards())
        answer: dict[str, dict[str, str]] = {}
        for name, state in sorted(self._all.items()):
            role, gateway = state.role, state.gateway_status
            if name not in live:
                gateway = "disconnected"
            if role == PRIMARY and (primary is None or primary.node != name):
                role = NodeRole.SECONDARY_MASTER.value
            if state.shard is not None and owners.get(state.shard, state).node != name:
                gateway = "disconnected"
            answer[name] = {"gateway_status": gateway, "role": role}
        return answer
