"""Running a process's main coroutine: known start-up failures become one clear line, not a traceback.

An operator who starts a container before its database, with a port already taken or a broker that is down
should read what is wrong and where, in one line; tracebacks are for bugs.  So the failures an environment
can cause (database, network, broker, migration lock, configuration found bad at start, e.g. a short JWT key
file, a missing or wrong key-store key) are logged as one ``CRITICAL`` line and the process exits 1, while
anything else keeps its traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.exc import DBAPIError

from shared.config import ConfigError

log = logging.getLogger("openprem")

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def config_failure(process: str, error: Exception) -> int:
    """A configuration the process refuses (``ConfigError``): one ``CRITICAL`` line on stderr, then exit 2.

    Printed, not logged: logging is configured from the settings that just failed.  The message names every bad
    variable and never a value (see ``shared.config``)."""
    print(f"CRITICAL {process} cannot start: {error}", file=sys.stderr)
    return EXIT_CONFIG


def describe(exc: BaseException) -> str | None:
    """A one-line explanation when ``exc`` is an environment failure, else ``None``."""
    if isinstance(exc, ConfigError):  # found only at start (a key file, say): the message names what to fix
        return str(exc)
    if isinstance(exc, DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        first = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        return f"database error: {first}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc}"
    # Broker, migration-lock and key-store-key failures carry a clear message of their own.
    if type(exc).__name__ in {"BusUnavailableError", "MigrationLockTimeout", "KeystoreError"}:
        return str(exc)
    return None


def event_loop_runner() -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """uvloop where it is installed (a dependency on Linux: about half the cost per TLS frame and socket write of
    the stdlib loop), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def run_process(process: str, main: Coroutine[Any, Any, Any]) -> int:
    """Run ``main`` on the event loop (``event_loop_runner``) with the exit code a supervisor (docker, systemd)
    should see."""
    try:
        result = event_loop_runner()(main)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        reason = describe(exc)
        if reason is None:
            log.critical("%s stopped on an unexpected error", process, exc_info=exc)
        else:
            log.critical("%s cannot run: %s", process, reason)
        return EXIT_FAILED
    return int(result) if isinstance(result, int) else 0


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (docker stop, Ctrl-C), so a process can stop in its own order."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
            loop.add_signal_handler(signum, event.set)
    return event
