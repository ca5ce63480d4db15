"""``python -m webapp`` serves the API until SIGTERM/SIGINT; ``python -m webapp migrate`` migrates and exits;
``python -m webapp cleanup`` deletes all but the newest 30 rotated log files (``docker/cleanup.sh``)."""

from __future__ import annotations

import argparse
import logging
import re
import socket
import sys

from shared.bus import Payload, make_bus
from shared.config import BusKind, ConfigError, Settings, default_env_file, load_settings
from shared.lifecycle import config_failure, run_process, stop_event
from shared.logcleanup import run_cleanup
from shared.logging import setup_logging, stop_logging
from webapp.app import WebApp, run_migrations
from webapp.cluster import ClusterView

log = logging.getLogger("openprem.webapp")


def node_id() -> str:
    """Stable across restarts of the same container, so the MQTT session (and its queued replies) survives."""
    return "webapp-" + (re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "local")


async def serve(settings: Settings) -> None:
    if settings.bus.kind is BusKind.LOCAL:
        log.warning("WA_BUS=LOCAL in a standalone webapp: no coreapp can answer; use WA_BUS=MQTT or `openprem run`")
    cluster: ClusterView | None = None
    if settings.ha.multiconnect:  # several webapps may share a host: each names itself
        bus = make_bus(settings.bus, f"webapp-{settings.ha.node_id}")
        cluster = ClusterView()

        def on_node(node: str, state: Payload | None) -> None:
            for route in cluster.update(node, state):  # a node gone: its requests will not be answered
                if failed := bus.abandon_route(route, f"{node} is gone; retry"):
                    log.warning("%s is gone: %d requests on %s answered 1011", node, failed, route)

        bus.watch_nodes(on_node)
    else:
        bus = make_bus(settings.bus, node_id())
    stopping = stop_event()
    await bus.start()
    app = WebApp(settings, bus, cluster=cluster)
    try:
        await app.start()
        await stopping.wait()
        log.info("webapp stopping")
    finally:
        await app.stop()
        await bus.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp", description="OpenPrem webapp: the /v1 REST API")
    parser.add_argument("command", nargs="?", choices=["serve", "migrate", "cleanup"], default="serve")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(env_file=default_env_file())
    except ConfigError as exc:
        return config_failure("webapp", exc)
    if args.command == "cleanup":  # before setup_logging: this short-lived process must not write webapp.log
        return run_cleanup(settings.paths.log_dir, "webapp")
    setup_logging(settings.log, settings.paths.log_dir, "webapp")
    try:
        if args.command == "migrate":
            return run_process("webapp migrate", run_migrations(settings))
        return run_process("webapp", serve(settings))
    finally:
        stop_logging()


if __name__ == "__main__":
    sys.exit(main())
