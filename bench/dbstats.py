"""MariaDB's global statement counters, to count database round trips per message.

``SHOW GLOBAL STATUS`` is server-wide: anything else running on the server at the time is counted too, so
these are upper bounds on a shared server.  Pings (SQLAlchemy ``pool_pre_ping``) are not statements: they
show up in ``Com_admin_commands`` only on some servers, so the report lists what the server gives.
"""

from __future__ import annotations

import asyncmy

from tests.support.services import mariadb_server

COUNTERS = (
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_delete",
    "Com_begin",
    "Com_commit",
    "Com_rollback",
    "Com_admin_commands",
)


async def mariadb_counters() -> dict[str, int]:
    """The counters now; empty when the server cannot be asked."""
    host, port, user, password = mariadb_server()
    try:
        conn = await asyncmy.connect(host=host, port=port, user=user, password=password)
    except (OSError, asyncmy.errors.Error):
        return {}
    try:
        async with conn.cursor() as cur:
            names = ", ".join(f"'{c}'" for c in COUNTERS)
            await cur.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
            return {str(name): int(value) for name, value in await cur.fetchall()}
    finally:
        conn.close()


def per_message(before: dict[str, int], after: dict[str, int], messages: int) -> dict[str, float]:
    if not before or not after or messages <= 0:
        return {}
    return {k: round((after[k] - before.get(k, 0)) / messages, 2) for k in after}
