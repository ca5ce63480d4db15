"""The nodes of a multiconnect deployment (``openprem.multiconnect``, ``compose/compose.multiconnect.yaml``): their
names, roles, what each runs and as which broker identity.  Imports nothing heavy, for the command line."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import DbSettings

SHARD_COUNTS = (1, 2, 4, 8, 16, 32)
"""The static shard counts of the reference (§5.3)."""
BUS_IDENTITIES = ("webapp", "coreapp")
"""The broker identities of ``conf/mosquitto.acl``; masters connect as ``coreapp``."""


class Role(enum.StrEnum):
    MASTER = "master"
    COREAPP = "coreapp"
    WEBAPP = "webapp"


@dataclass(frozen=True)
class Node:
    """One app process of the deployment."""

    name: str
    role: Role

    @property
    def module(self) -> str:
        """What ``python -m`` runs: masters are coreapps with ``WA_MASTER_NODE=1``."""
        return "webapp" if self.role is Role.WEBAPP else "coreapp"

    @property
    def bus_identity(self) -> str:
        return "webapp" if self.role is Role.WEBAPP else "coreapp"


def plan_nodes(masters: int, coreapps: int, webapps: int) -> list[Node]:
    """``master-1..``, ``core-1..``, ``web-1..``: start order (masters first, webapps last)."""
    return [
        *(Node(f"master-{i}", Role.MASTER) for i in range(1, masters + 1)),
        *(Node(f"core-{i}", Role.COREAPP) for i in range(1, coreapps + 1)),
        *(Node(f"web-{i}", Role.WEBAPP) for i in range(1, webapps + 1)),
    ]


def db_env(db: DbSettings) -> dict[str, str]:
    """The ``WA_DB_*`` variables that make a node's ``load_settings`` produce ``db``."""
    return {
        "WA_DB_ENGINE": db.engine.value,
        "WA_DB_HOSTNAME": db.hostname,
        "WA_DB_PORT": str(db.effective_port),
        "WA_DB_USERNAME": db.username,
        "WA_DB_PASSWORD": db.password,
        "WA_DB_NAME_PREFIX": db.name_prefix,
    }
