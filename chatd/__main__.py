"""``python -m chatd``: serve the sandbox (the default), or run an admin command (``python -m chatd --help``)."""

from __future__ import annotations

import logging
import os
import sys

from chatd.app import Chatd
from chatd.cli import run
from shared.config import ConfigError, default_env_file, load_settings
from shared.lifecycle import config_failure, run_process, stop_event
from shared.logging import setup_logging, stop_logging

log = logging.getLogger("openprem.chatd")


async def serve() -> int:
    try:
        settings = load_settings(env_file=default_env_file())
    except ConfigError as exc:
        return config_failure("chatd", exc)
    setup_logging(settings.log, settings.paths.log_dir, "chatd")
    chatd = Chatd(settings.sandbox)
    stop = stop_event()
    await chatd.start()
    try:
        if os.environ.get("WA_SANDBOX_DEMO", "").lower() in ("1", "true", "yes"):
            await chatd.create_demo_phones()
        await stop.wait()
    finally:
        log.info("stopping chatd")
        await chatd.stop()
        stop_logging()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args == ["serve"]:
        return run_process("chatd", serve())
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
