"""Process-wide logging: structlog on top of stdlib ``logging``, console by default, rotating files on demand.

Code logs through ``logging.getLogger("openprem.<part>")`` (or ``structlog.get_logger``); both end up in the
same handlers and pass through the same processors, among them ``redact_secrets``.

With ``LogSettings.to_file`` the file handler sits behind a ``QueueHandler``/``QueueListener`` pair, so the
event loop never waits on the disk (DESIGN §9).  Measured pitfall (dependencies.md §5.1): ``QueueHandler.prepare``
formats the record in the caller's thread and replaces ``record.msg`` with the resulting string, so structlog's
``ProcessorFormatter`` must be attached to the *QueueHandler*; the file handler only writes ``%(message)s``.

Rotation per process: webapp 30 files of 20 MB; coreapp 30 files of 15 MB, gzip-compressed; others as webapp.
"""

from __future__ import annotations

import atexit
import gzip
import logging
import logging.handlers
import os
import queue
import re
import shutil
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.config import LogSettings
from shared.private_files import make_private_dirs, private_opener

MB = 1024 * 1024


@dataclass(frozen=True)
class Rotation:
    max_bytes: int
    backup_count: int
    compress: bool


ROTATION: dict[str, Rotation] = {
    "webapp": Rotation(max_bytes=20 * MB, backup_count=30, compress=False),
    "coreapp": Rotation(max_bytes=15 * MB, backup_count=30, compress=True),
}
DEFAULT_ROTATION = Rotation(max_bytes=20 * MB, backup_count=30, compress=False)

REDACTED = "[redacted]"
# A key is secret when one of its ``_``/``-``/``.``-separated words is one of these ...
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "pin",
        "cert",
        "certificate",
        "key",
        "apikey",
        "authorization",
        "jwt",
        "credentials",
    }
)
# ... unless it only names or counts the secret (``key_id``, ``cert_file``, ``token_ttl_s``).
_HARMLESS_LAST_WORDS = frozenset({"id", "ids", "file", "path", "dir", "count", "len", "size", "type", "ttl", "s"})
_SPLIT = re.compile(r"[_.\-\s]+")

# Chatty libraries: only their warnings and errors.
_QUIET_LOGGERS = ("aiosqlite", "asyncio", "aiomqtt", "paho", "alembic.runtime.plugins")


def is_secret_key(key: str) -> bool:
    """Whether a log field with this name must not be written out."""
    words = [w for w in _SPLIT.split(key.lower()) if w]
    if not words:
        return False
    if len(words) > 1 and words[-1] in _HARMLESS_LAST_WORDS:
        return False
    return any(w in _SECRET_WORDS for w in words)


def _redact(value: Any, depth: int) -> Any:
    if depth > 5:
        return value
    if isinstance(value, MutableMapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else _redact(v, depth + 1) for k, v in value.items()
        }
    if type(value) is list:
        return [_redact(v, depth + 1) for v in value]
    if type(value) is tuple:
        return tuple(_redact(v, depth + 1) for v in value)
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace the values of secret-looking keys (also inside nested dicts)."""
    for key in list(event_dict):
        if key.startswith("_") or key == "event":
            continue
        if is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key], 1)
    return event_dict


def _gzip_namer(name: str) -> str:
    return name + ".gz"


def _gzip_rotator(source: str, dest: str) -> None:
    with (
        open(source, "rb") as src,
        open(dest, "wb", opener=private_opener) as raw,
        gzip.GzipFile(fileobj=raw, mode="wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    os.remove(source)


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates each log file 0600 (renamed backups keep it): logs name customers and numbers."""

    def _open(self) -> Any:
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=private_opener)


def make_file_handler(path: Path, rotation: Rotation) -> logging.handlers.RotatingFileHandler:
    """A ``RotatingFileHandler`` writing pre-formatted lines (files 0600 in a 0700 directory); gzip-compressing
    backups when asked."""
    make_private_dirs(path.parent)
    handler = _PrivateRotatingFileHandler(
        path, maxBytes=rotation.max_bytes, backupCount=rotation.backup_count, encoding="utf-8", delay=True
    )
    if rotation.compress:
        handler.namer = _gzip_namer
        handler.rotator = _gzip_rotator
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


@dataclass
class _State:
    handlers: list[logging.Handler]
    listener: logging.handlers.QueueListener | None
    file_handler: logging.Handler | None


_state: _State | None = None


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def setup_logging(
    settings: LogSettings,
    log_dir: Path,
    process: str,
    *,
    rotation: Rotation | None = None,
    console: bool = True,
) -> None:
    """Configure logging for this process; safe to call again (the previous setup is stopped first).

    ``process`` names the log file (``<log_dir>/<process>.log``) and picks its rotation policy;
    ``rotation`` overrides that policy (tests use a tiny ``max_bytes``).
    """
    stop_logging()
    global _state

    shared = _shared_processors()
    foreign_pre_chain: list[Processor] = [structlog.stdlib.ExtraAdder(), *shared]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )

    handlers: list[logging.Handler] = []
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign_pre_chain,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=_colors(stream.stream)),
                ],
            )
        )
        handlers.append(stream)

    listener: logging.handlers.QueueListener | None = None
    file_handler: logging.Handler | None = None
    if settings.to_file:
        file_handler = make_file_handler(
            Path(log_dir) / f"{process}.log", rotation or ROTATION.get(process, DEFAULT_ROTATION)
        )
        log_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        queue_handler = logging.handlers.QueueHandler(log_queue)
        # The formatter belongs here, not on the file handler (see the module docstring).
        queue_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=foreign_pre_chain,
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(),
                ],
            )
        )
        listener = logging.handlers.QueueListener(log_queue, file_handler, respect_handler_level=False)
        listener.start()
        handlers.append(queue_handler)

    root = logging.getLogger()
    root.setLevel(settings.level)
    for handler in handlers:
        root.addHandler(handler)
    quiet_level = max(logging.getLevelName(settings.level), logging.WARNING)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet_level)
    logging.captureWarnings(True)
    _state = _State(handlers=handlers, listener=listener, file_handler=file_handler)


def stop_logging() -> None:
    """Flush and detach what ``setup_logging`` installed (waits for the file queue to drain)."""
    global _state
    state, _state = _state, None
    if state is None:
        return
    root = logging.getLogger()
    for handler in state.handlers:
        root.removeHandler(handler)
    if state.listener is not None:
        state.listener.stop()  # processes everything already queued, then joins the thread
    if state.file_handler is not None:
        state.file_handler.close()
    for handler in state.handlers:
        handler.close()


def _colors(stream: Any) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


atexit.register(stop_logging)
