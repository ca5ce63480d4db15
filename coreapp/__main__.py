"""``python -m coreapp`` runs coreapp until SIGTERM/SIGINT; ``python -m coreapp migrate`` migrates and exits;
``python -m coreapp cleanup`` deletes all but the newest 30 rotated log files (``docker/cleanup.sh``);
``python -m coreapp shards N`` sets the shard count of a multiconnect deployment before its nodes start (later:
``POST /v1/account/shards``)."""

from __future__ import annotations

import logging
import sys

from coreapp.app import CoreApp, run_migrations
from coreapp.ha.reshard import live_shard_leases
from coreapp.storage.leases import LeaseStore
from coreapp.storage.shard_map import ShardMapStore
from shared.bus import make_bus
from shared.config import ConfigError, Settings, default_env_file, load_settings
from shared.db.engine import Database
from shared.lifecycle import config_failure, run_process, stop_event
from shared.logcleanup import run_cleanup
from shared.logging import setup_logging, stop_logging
from shared.shards import SHARD_COUNTS
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp")

NODE_ID = "coreapp"


async def _serve(settings: Settings) -> None:
    supervisor = TaskSupervisor("coreapp-bus")
    multiconnect = settings.ha.multiconnect
    node = settings.ha.node_id if multiconnect else NODE_ID
    bus = make_bus(settings.bus, node, supervisor, multiconnect_server=multiconnect)
    app = CoreApp(settings, bus)
    stop = stop_event()
    try:
        await app.start()
        await stop.wait()
        log.info("signal received: stopping")
    finally:
        await app.stop()
        await supervisor.close()


async def set_shards_offline(settings: Settings, text: str) -> int:
    """``python -m coreapp shards N``: set the count while no node owns a shard (before a deployment starts)."""
    try:
        shards = int(text)
    except ValueError:
        shards = 0
    if shards not in SHARD_COUNTS:
        print(f"shards must be one of {', '.join(map(str, SHARD_COUNTS))}, not {text!r}", file=sys.stderr)
        return 2
    await run_migrations(settings)
    db = await Database.connect(settings.db)
    try:
        leases, maps = LeaseStore(db), ShardMapStore(db)
        current = await maps.get()
        if current.shards == shards and not current.changing:  # repeatable (compose runs it at every `up`)
            print(f"shard count is {shards} already")
            return 0
        live = live_shard_leases([(row.name, row.expired) for row in await leases.all()])
        if live:
            print(
                f"shards are owned now ({', '.join(live)}): change the count with POST /v1/account/shards",
                file=sys.stderr,
            )
            return 1
        if not await maps.set_offline(shards):
            print("a shard change is under way: retry when it is done", file=sys.stderr)
            return 1
        print(f"shard count set to {shards}")
        return 0
    finally:
        await db.close()


def main(argv: list[str]) -> int:
    try:
        settings = load_settings(env_file=default_env_file())
    except ConfigError as exc:
        return config_failure("coreapp", exc)
    if argv == ["cleanup"]:  # before setup_logging: this short-lived process must not write coreapp.log
        return run_cleanup(settings.paths.log_dir, "coreapp")
    setup_logging(settings.log, settings.paths.log_dir, "coreapp")
    try:
        if argv[:1] == ["migrate"]:
            return run_process("coreapp migrate", run_migrations(settings))
        if len(argv) == 2 and argv[0] == "shards":
            return run_process("coreapp shards", set_shards_offline(settings, argv[1]))
        if argv:
            print("usage: python -m coreapp [migrate | cleanup | shards N]", file=sys.stderr)
            return 2
        return run_process("coreapp", _serve(settings))
    finally:
        stop_logging()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
