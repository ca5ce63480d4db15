"""``openprem.multiconnect.Cluster`` live: a multiconnect deployment as OS processes (2 masters, 1 shard on
2 coreapps, 2 webapps) on MariaDB and PostgreSQL, the private authenticated broker and chatd; then the faults the
HA tests use (SIGSTOP of the primary master, SIGKILL and restart of a coreapp, restart of a webapp) and a clean stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from openprem.broker import mosquitto_binary
from openprem.multiconnect import Cluster, ClusterError, Role
from shared.config import DbEngine, DbSettings
from tests.support.mosquitto import skip_or_fail
from tests.support.ports import free_port
from tests.support.services import db_settings_for, drop_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["mariadb", "postgres"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    if mosquitto_binary() is None:
        skip_or_fail("mosquitto is not installed")
    db = db_settings_for(request.param, tmp_path)
    found = Cluster(tmp_path / "cluster", db, masters=2, shards=1, standbys=1, webapps=2)
    try:
        await found.start()
        yield found
    finally:
        await found.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(found.logs())
        await drop_database(db)


async def _wait_roles(
    cluster: Cluster, predicate: Callable[[dict[str, str]], bool], timeout_s: float, what: str
) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    roles: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            roles = await cluster.roles()
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            roles = {}
        if predicate(roles):
            return roles
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last roles {roles}")


def _primary(roles: dict[str, str]) -> list[str]:
    return [node for node, role in roles.items() if role == "primary_master"]


async def test_cluster_roles_and_faults(cluster: Cluster) -> None:
    masters = cluster.names(Role.MASTER)
    # Every webapp answers (start waited for it); one primary master, the other secondary, both coreapps listed.
    for web in cluster.names(Role.WEBAPP):
        status, _ = await cluster.health(web)
        assert status == 200
    roles = await _wait_roles(
        cluster,
        lambda r: len(_primary(r)) == 1 and set(cluster.node_names) - set(cluster.names(Role.WEBAPP)) <= set(r),
        30,
        "one primary master and every master and coreapp in /v1/health",
    )
    (primary,) = _primary(roles)
    (secondary,) = [m for m in masters if m != primary]
    assert roles[secondary] == "secondary_master"

    # A hung primary (SIGSTOP) loses its lease: the other master takes over within the lease time and a margin.
    cluster.pause(primary)
    await _wait_roles(cluster, lambda r: _primary(r) == [secondary], 6.0 * 3, f"{secondary} to become primary")
    cluster.resume(primary)

    # A crashed coreapp comes back with the same environment; a webapp restarts on its port.
    core = cluster.names(Role.COREAPP)[0]
    pid = cluster.pid(core)
    cluster.kill(core)
    assert not cluster.alive(core)
    await cluster.restart(core)
    assert cluster.alive(core) and cluster.pid(core) != pid
    await cluster.restart("web-2")
    status, _ = await cluster.health("web-2")
    assert status == 200

    await cluster.stop()
    assert not any(cluster.alive(name) for name in (*cluster.node_names, "chatd", "mosquitto"))


async def test_a_failed_start_stops_what_started_and_says_why(tmp_path: Path) -> None:
    """The broker (authenticated, the shipped ACL) and chatd come up; the migration cannot reach its database:
    ``start`` raises with the command's log, and nothing is left running."""
    if mosquitto_binary() is None:
        skip_or_fail("mosquitto is not installed")
    closed = free_port()  # nothing listens there
    db = DbSettings(engine=DbEngine.MYSQL, hostname="127.0.0.1", port=closed, username="root", name_prefix="nx_")
    cluster = Cluster(tmp_path / "cluster", db, extra_env={"WA_DB_STARTUP_WAIT": "0"})
    with pytest.raises(ClusterError, match=r"python -m coreapp migrate` exited with 1"):
        await cluster.start()
    assert set(cluster.procs) == {"mosquitto", "chatd", "migrate-coreapp"}
    assert not any(proc.alive() for proc in cluster.procs.values())
    assert "allow_anonymous false" in (cluster.workdir / "mosquitto" / "mosquitto.conf").read_text()
    assert cluster.log_path("chatd").is_file() and cluster.log_path("migrate-coreapp").is_file()
    assert "chatd" in cluster.logs() and "migrate-coreapp" in cluster.logs()
