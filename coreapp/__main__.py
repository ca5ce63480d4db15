"""``python -m coreapp`` runs coreapp until SIGTERM/SIGINT; ``python -m coreapp migrate`` migrates and exits;
``python -m coreapp cleanup`` deletes all but the newest 30 rotated log files (``docker/cleanup.sh``)."""

from __future__ import annotations

import logging
import sys

from coreapp.app import CoreApp, run_migrations
from shared.bus import make_bus
from shared.config import ConfigError, Settings, default_env_file, load_settings
from shared.lifecycle import config_failure, run_process, stop_event
from shared.logcleanup import run_cleanup
from shared.logging import setup_logging, stop_logging
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp")

NODE_ID = "coreapp"


async def _serve(settings: Settings) -> None:
    supervisor = TaskSupervisor("coreapp-bus")
    bus = make_bus(settings.bus, NODE_ID, supervisor)
    app = CoreApp(settings, bus)
    stop = stop_event()
    try:
        await app.start()
        await stop.wait()
        log.info("signal received: stopping")
    finally:
        await app.stop()
        await supervisor.close()


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
        if argv:
            print("usage: python -m coreapp [migrate | cleanup]", file=sys.stderr)
            return 2
        return run_process("coreapp", _serve(settings))
    finally:
        stop_logging()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
