"""The webapp ↔ coreapp bus: pick ``LocalBus`` or ``MqttBus`` from ``BusSettings``."""

from __future__ import annotations

from shared.bus.base import Bus, NodeWatcher, Payload, RawHandler
from shared.bus.local import LocalBus
from shared.config import BusKind, BusSettings
from shared.tasks import TaskSupervisor

__all__ = ["Bus", "LocalBus", "NodeWatcher", "Payload", "RawHandler", "make_bus"]


def make_bus(
    settings: BusSettings, node_id: str, supervisor: TaskSupervisor | None = None, *, multiconnect_server: bool = False
) -> Bus:
    """The bus for one process.  ``LOCAL`` gives a fresh ``LocalBus``: the embedded launcher must share one
    instance between webapp and coreapp itself.  The MQTT module is imported only when it is used."""
    if settings.kind is BusKind.MQTT:
        from shared.bus.mqtt import MqttBus

        if multiconnect_server:  # requests come by route only, and a server never calls
            return MqttBus(settings, node_id, supervisor, replies=False, default_route=False)
        return MqttBus(settings, node_id, supervisor)
    return LocalBus(settings.rpc_timeout_s)
