"""``health.get``: the gateway status that ``/v1/health`` reports."""

from __future__ import annotations

import enum

import msgspec

from shared.bus.rpc import Empty, Method, Placement


class GatewayStatus(enum.StrEnum):
    """``/v1/health`` ``gateway_status``."""

    CONNECTED = "connected"
    CONNECTING = "connecting"
    DISCONNECTED = "disconnected"
    UNINITIALIZED = "uninitialized"
    UNREGISTERED = "unregistered"


class NodeRole(enum.StrEnum):
    """A node's ``role`` in the multiconnect ``/v1/health`` (reference §2.4)."""

    PRIMARY_MASTER = "primary_master"
    SECONDARY_MASTER = "secondary_master"
    COREAPP = "coreapp"


class CriticalError(msgspec.Struct, omit_defaults=True):
    """A condition that holds right now (DESIGN §3), e.g. a nearly full disk: 1016 with what and where."""

    code: int
    title: str
    details: str | None = None


class Health(msgspec.Struct, omit_defaults=True):
    gateway_status: GatewayStatus
    errors: list[CriticalError] = []


HEALTH = Method(
    "health.get",
    Empty,
    Health,
    doc="`gateway_status`, plus `errors` (`[{code: 1016, …}]`) only while a critical condition holds (disk under "
    "`WA_DISK_MIN_FREE_MB`)",
    placement=Placement.ANY_SHARD,
)
