"""``python -m openprem run --multiconnect``: a multiconnect deployment on this machine, in the foreground.

It starts an ``openprem.multiconnect.Cluster`` (masters, coreapps, webapps, chatd and a private Mosquitto, each
its own process) on the machine's MariaDB (default) or PostgreSQL, prints the addresses and the quick start,
watches the nodes (a node that dies is reported, never restarted: that is the failover to watch), and on Ctrl-C
(SIGINT/SIGTERM) stops everything in order.  State (logs, media, keys, chatd, broker) lives under
``var/multiconnect/`` and the database ``<prefix>openprem`` (``openprem_mc_openprem``), so an admin password set
in one run holds in the next.

The database server: ``WA_DB_HOSTNAME``, ``WA_DB_PORT``, ``WA_DB_USERNAME`` and ``WA_DB_PASSWORD`` from the
environment when set, else this machine's defaults (127.0.0.1, root without a password on MariaDB, ``postgres``
with trust on PostgreSQL).  Ports: the embedded install's where free (web-1 on 9090, chatd's admin API on 9091),
the next webapps on 9093, 9094, ...; any port taken is replaced by a free one and the banner shows which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from openprem.multiconnect import Cluster, Role
from openprem.quickstart import DEFAULT_ADMIN, commands
from shared.config import DbEngine, DbSettings, LogSettings

log = logging.getLogger("openprem.multiconnect")

BACKENDS = {"mariadb": DbEngine.MYSQL, "postgres": DbEngine.PGSQL}
DEFAULT_USERS = {"mariadb": "root", "postgres": "postgres"}
DEFAULT_WORKDIR = Path("var/multiconnect")
DEFAULT_DB_PREFIX = "openprem_mc_"
WATCH_EVERY_S = 1.0


@dataclass(frozen=True)
class MulticonnectOptions:
    backend: str = "mariadb"
    masters: int = 2
    shards: int = 2
    standbys: int = 1
    webapps: int = 2
    workdir: Path = DEFAULT_WORKDIR
    db_prefix: str = DEFAULT_DB_PREFIX
    quickstart: bool = True


def db_settings(backend: str, prefix: str, env: Mapping[str, str] | None = None) -> DbSettings:
    """The database of ``openprem run --multiconnect``: the server from ``WA_DB_*`` when set, else the machine's."""
    env = os.environ if env is None else env
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}")
    port = env.get("WA_DB_PORT") or None
    return DbSettings(
        engine=BACKENDS[backend],
        hostname=env.get("WA_DB_HOSTNAME") or "127.0.0.1",
        port=int(port) if port else None,
        username=env.get("WA_DB_USERNAME") or DEFAULT_USERS[backend],
        password=env.get("WA_DB_PASSWORD", ""),
        name_prefix=prefix,
    )


def preferred_ports(webapps: int) -> dict[str, int]:
    """The embedded install's ports where they fit: web-1 9090, chatd admin 9091, media 9092, web-2.. 9093.."""
    ports = {"web-1": 9090, "chatd-admin": 9091, "chatd-media": 9092, "chat": 5222, "chat-fallback": 8443}
    ports.update({f"web-{i}": 9091 + i for i in range(2, webapps + 1)})
    return ports


def build_cluster(options: MulticonnectOptions, env: Mapping[str, str] | None = None) -> Cluster:
    return Cluster(
        workdir=options.workdir,
        db=db_settings(options.backend, options.db_prefix, env),
        masters=options.masters,
        shards=options.shards,
        standbys=options.standbys,
        webapps=options.webapps,
        demo_phones=True,
        preferred_ports=preferred_ports(options.webapps),
    )


def quickstart_commands(cluster: Cluster) -> str:
    """The embedded quick start against web-1, with ``--admin-url`` when chatd's admin API is not the default."""
    text = commands(f"{cluster.web_urls[0].replace('127.0.0.1', 'localhost')}/v1")
    if f"{cluster.admin_url}/admin" != DEFAULT_ADMIN:
        text = text.replace("-m chatd ", f"-m chatd --admin-url {cluster.admin_url} ")
    return text


def banner(cluster: Cluster, options: MulticonnectOptions, quickstart: bool = True) -> str:
    rule = "=" * 100
    coreapps = len(cluster.names(Role.COREAPP))
    lines = [
        rule,
        f"OpenPrem multiconnect is running: {cluster.masters} masters, {coreapps} coreapps ({cluster.shards} shards "
        f"+ {cluster.standbys} standby), {cluster.webapps} webapps, chatd, Mosquitto; {options.backend} database "
        f"{cluster.database}. Ctrl-C stops it.",
    ]
    for name, url in zip(cluster.names(Role.WEBAPP), cluster.web_urls, strict=True):
        lines.append(f"  REST API ({name})  {url}/v1   (self-signed certificate: curl -k)")
    lines += [
        f"  Sandbox admin    {cluster.admin_url}/admin   (.venv/bin/python -m chatd --admin-url {cluster.admin_url})",
        f"  Logs             {cluster.workdir / 'logs'}/<node>.log",
        "  Nodes (pid)      " + ", ".join(f"{name} ({cluster.pid(name)})" for name in cluster.node_names),
        "",
        '  /v1/health names every node with its role: {"health": {"master-1": {"role": "primary_master", ...}, ...}}.',
        "  Failover: `kill -KILL <pid>` a coreapp or the primary master, or `kill -STOP <pid>` (then -CONT) to hang",
        "  it, and watch /v1/health; within about WA_HA_LEASE_TTL (6 s) a standby or the other master takes over.",
        "  Calls through any webapp reach the shard's owner.",
    ]
    if quickstart:
        lines += ["", "QUICK START: paste into another terminal, from the repository root.", rule]
        lines.append(quickstart_commands(cluster).rstrip("\n"))
    lines.append(rule)
    return "\n".join(lines) + "\n"


async def watch(cluster: Cluster, stop: asyncio.Event) -> None:
    """Log each node that dies (once per death); never restarts it."""
    reported: set[tuple[str, int | None]] = set()
    while not stop.is_set():
        for name, proc in list(cluster.procs.items()):
            if proc.popen is not None and not proc.alive() and name in (*cluster.node_names, "chatd", "mosquitto"):
                key = (name, proc.pid)
                if key not in reported:
                    reported.add(key)
                    log.warning("%s (pid %s) exited with %s; see %s", name, proc.pid, proc.returncode, proc.log_path)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WATCH_EVERY_S)


async def serve(cluster: Cluster, options: MulticonnectOptions, stop: asyncio.Event | None = None) -> int:
    """Start the cluster, print the banner, wait for ``stop`` (SIGINT/SIGTERM), stop the cluster."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    startup = asyncio.ensure_future(cluster.start())
    stopping = asyncio.ensure_future(stop.wait())
    code = 0
    try:
        await asyncio.wait({startup, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            log.info("stop requested during start-up")
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await startup
        elif startup.exception() is not None:
            log.error("start-up failed: %s", startup.exception())
            code = 1
        else:
            print(banner(cluster, options, options.quickstart), flush=True)
            await watch(cluster, stop)
            log.info("stopping (signal received)")
    finally:
        stopping.cancel()
        await cluster.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    log.info("stopped")
    return code


def run(options: MulticonnectOptions) -> int:
    """``openprem run --multiconnect``."""
    from shared.lifecycle import run_process
    from shared.logging import setup_logging, stop_logging

    try:
        cluster = build_cluster(options)
    except ValueError as exc:
        print(f"openprem run --multiconnect: {exc}")
        return 2
    setup_logging(LogSettings(), cluster.workdir / "logs", "openprem")
    try:
        return run_process("openprem multiconnect", serve(cluster, options))
    finally:
        stop_logging()
