"""The embedded launcher: chatd, coreapp and webapp in one process on one ``LocalBus`` (what ``make run`` runs).

Settings.  ``openprem run`` never reads ``conf/whatsapp.conf``: that file holds the docker compose values
(MySQL host ``mysql``, MQTT, container paths).  It reads ``conf/embedded.conf`` when present (optional,
same format; ``--env-file`` names another), then the process environment, and then *forces* the embedded
defaults (``EMBEDDED_DEFAULTS``: SQLite under ``var/``, web port 9090, sandbox ports, ...) on every field
that neither of those two set.  The bus is always the in-process one.

Order.  Start chatd, coreapp (after pointing ``WA_CHAT_CA_FILE`` at chatd's CA), the bus, webapp; stop in
reverse, each step bounded by a timeout.  SIGINT/SIGTERM (Ctrl-C) stop everything cleanly, also in the
middle of starting.

The apps are imported inside functions so that this module imports even where an app is broken or not yet
written (tests of the settings logic do not need them).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.config import BusKind, ConfigError, DbEngine, Settings, load_settings
from shared.lifecycle import config_failure, run_process
from shared.private_files import make_private_dirs

log = logging.getLogger("openprem.launcher")

EMBEDDED_ENV_FILE = Path("conf/embedded.conf")
STOP_TIMEOUT_S = 15.0

# (section, field) -> value forced in embedded mode unless the env file or the environment set it.
# Paths are relative to the working directory (the repository root under ``make run``).
EMBEDDED_DEFAULTS: dict[tuple[str, str], Any] = {
    ("db", "engine"): DbEngine.SQLITE,
    ("db", "sqlite_path"): Path("var/data/openprem.db"),
    ("paths", "data_dir"): Path("var/data"),
    ("paths", "media_dir"): Path("var/media"),
    ("paths", "log_dir"): Path("var/log"),
    # The default admin password is public ("secret"): keep the API on loopback unless told otherwise.
    ("web", "host"): "127.0.0.1",
    ("web", "port"): 9090,
    ("web", "allow_http_loopback_webhooks"): True,
    # Webhook receivers and media links on this machine (``webhook-echo``): the only mode that allows loopback.
    ("fetch", "allow_loopback"): True,
    ("sandbox", "host"): "127.0.0.1",
    ("sandbox", "port"): 5222,
    ("sandbox", "fallback_port"): 8443,
    ("sandbox", "admin_host"): "127.0.0.1",
    ("sandbox", "admin_port"): 9091,
    ("sandbox", "media_port"): 9092,
    ("sandbox", "data_dir"): Path("var/chatd"),
}
# Forced only when the launcher starts its own chatd; with --no-sandbox coreapp follows WA_CHAT_*.
SANDBOX_CHAT_DEFAULTS: dict[tuple[str, str], Any] = {
    ("chat", "host"): "127.0.0.1",
    ("chat", "port"): 5222,
    ("chat", "fallback_port"): 8443,
    ("chat", "media_port"): 9092,
}


def _with_fields(model: BaseModel, values: Mapping[str, Any], keep_set: bool) -> Any:
    """``model`` with ``values`` applied, except (when ``keep_set``) to fields explicitly set on it."""
    update = {k: v for k, v in values.items() if not (keep_set and k in model.model_fields_set)}
    return model.model_copy(update=update) if update else model


def _apply(settings: Settings, forced: Mapping[tuple[str, str], Any], keep_set: bool) -> Settings:
    by_section: dict[str, dict[str, Any]] = {}
    for (section, name), value in forced.items():
        by_section.setdefault(section, {})[name] = value
    sections = {
        section: _with_fields(getattr(settings, section), values, keep_set) for section, values in by_section.items()
    }
    return settings.model_copy(update=sections)


def embedded_settings(base: Settings, *, sandbox: bool = True) -> Settings:
    """``base`` with the embedded defaults on every field it does not set explicitly.

    "Explicitly" means present in the env file or the environment that ``load_settings`` read (pydantic's
    ``model_fields_set``), so ``WA_WEB_PORT=9443 make run`` still works.  The bus is always ``LOCAL`` and
    ``embedded`` always true: the launcher runs everything in one process.
    """
    forced = dict(EMBEDDED_DEFAULTS)
    if sandbox:
        forced.update(SANDBOX_CHAT_DEFAULTS)
    settings = _apply(base, forced, keep_set=True)
    settings = _apply(settings, {("bus", "kind"): BusKind.LOCAL}, keep_set=False)
    return settings.model_copy(update={"embedded": True})


def with_chat_ca(settings: Settings, ca_file: Path) -> Settings:
    """Make coreapp trust the CA of the chatd this launcher started (``WA_CHAT_CA_FILE``)."""
    return settings.model_copy(update={"chat": settings.chat.model_copy(update={"ca_file": ca_file})})


def explicit_overrides(base: Settings, *, sandbox: bool = True) -> list[str]:
    """Names of the ``WA_*`` variables that kept a non-embedded value (logged at start, values never)."""
    from shared.config import ENV_VARS

    reverse = {v: k for k, v in ENV_VARS.items()}
    forced = dict(EMBEDDED_DEFAULTS)
    if sandbox:
        forced.update(SANDBOX_CHAT_DEFAULTS)
    names = []
    for section, name in forced:
        if name in getattr(base, section).model_fields_set:
            names.append(reverse.get((section, name), f"{section}.{name}"))
    return sorted(names)


def run_settings(
    env: Mapping[str, str] | None = None, env_file: Path | None = None, *, sandbox: bool = True
) -> tuple[Settings, list[str]]:
    """Settings for ``openprem run``/``migrate``: ``env_file`` (default ``conf/embedded.conf`` if it exists),
    then ``env`` (default ``os.environ``), then the embedded defaults.  Also returns the variables that
    overrode an embedded default."""
    if env_file is None and EMBEDDED_ENV_FILE.exists():
        env_file = EMBEDDED_ENV_FILE
    elif env_file is not None and not env_file.is_file():
        raise ConfigError(f"env file {env_file} not found")
    base = load_settings(env=env, env_file=env_file)
    return embedded_settings(base, sandbox=sandbox), explicit_overrides(base, sandbox=sandbox)


def prepare_dirs(settings: Settings, *, sandbox: bool) -> None:
    dirs = [settings.paths.data_dir, settings.paths.media_dir, settings.paths.log_dir]
    if settings.db.engine is DbEngine.SQLITE:
        dirs.append(settings.db.sqlite_path.parent)
    if sandbox:
        dirs.append(settings.sandbox.data_dir)
    for directory in dirs:
        make_private_dirs(Path(directory))


# --------------------------------------------------------------------------------------------------- run


@dataclass
class _Started:
    """What is up, in start order, so that shutdown can undo it in reverse."""

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)

    def add(self, name: str, stop: Callable[[], Awaitable[None]]) -> None:
        self.steps.append((name, stop))

    async def stop_all(self) -> None:
        while self.steps:
            name, stop = self.steps.pop()
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await stop()
                log.info("stopped %s", name)
            except TimeoutError:
                log.error("%s did not stop within %.0fs; going on", name, STOP_TIMEOUT_S)
            except Exception:
                log.exception("%s failed to stop cleanly; going on", name)


@dataclass
class RunOptions:
    sandbox: bool = True
    quickstart: bool = True


async def _start_all(settings: Settings, options: RunOptions, started: _Started) -> Settings:
    from shared.bus.local import LocalBus

    if options.sandbox:
        from chatd.app import Chatd

        chatd = Chatd(settings.sandbox)
        await chatd.start()
        started.add("chatd", chatd.stop)
        settings = with_chat_ca(settings, chatd.ca_file)
        if demo_enabled():
            await chatd.create_demo_phones()
        log.info(
            "chatd up: chat ports %d/%d, admin on %s:%d",
            settings.sandbox.port,
            settings.sandbox.fallback_port,
            settings.sandbox.admin_host,
            settings.sandbox.admin_port,
        )

    from coreapp.app import CoreApp

    bus = LocalBus(default_timeout_s=settings.bus.rpc_timeout_s)
    coreapp = CoreApp(settings, bus)
    await coreapp.start()  # registers the RPC handler (bus.serve) before the bus starts
    started.add("coreapp", coreapp.stop)
    await bus.start()
    started.add("bus", bus.stop)

    from webapp.app import WebApp

    webapp = WebApp(settings, bus)
    await webapp.start()
    started.add("webapp", webapp.stop)
    log.info("webapp up at %s", webapp.url)
    return settings


def demo_enabled() -> bool:
    """``WA_SANDBOX_DEMO`` (set to 1 by ``openprem run`` unless given): chatd gets the demo phones."""
    return os.environ.get("WA_SANDBOX_DEMO", "").strip().lower() in ("1", "true", "yes")


def api_url(settings: Settings) -> str:
    return f"https://localhost:{settings.web.port}/v1"


def admin_url(settings: Settings) -> str:
    host = settings.sandbox.admin_host
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{shown}:{settings.sandbox.admin_port}/admin"


async def serve(settings: Settings, options: RunOptions, stop: asyncio.Event | None = None) -> int:
    """Start everything, wait for ``stop`` (set by SIGINT/SIGTERM), stop everything.  Returns the exit code."""
    from openprem.quickstart import banner
    from shared.tasks import TaskSupervisor

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    started = _Started()
    supervisor = TaskSupervisor("launcher")
    startup = supervisor.spawn("startup", _start_all(settings, options, started))
    stop_wait = supervisor.spawn("stop-wait", stop.wait())
    code = 0
    try:
        await asyncio.wait({startup, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if startup.done() and not startup.cancelled() and startup.exception() is None:
            if options.quickstart:
                sandbox_admin = admin_url(settings) if options.sandbox else None
                print(banner(api_url(settings), sandbox_admin, _data_dir_label(settings)), flush=True)
            await stop_wait
            log.info("stopping (signal received)")
        elif startup.done() and not startup.cancelled():
            exc = startup.exception()
            log.error("start-up failed: %r (traceback above)", exc)
            code = 1
        else:
            log.info("stop requested during start-up")
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await startup
    finally:
        await started.stop_all()
        await supervisor.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
    return code


def _data_dir_label(settings: Settings) -> str:
    data = Path(settings.paths.data_dir)
    return f"{data.parent}/" if data.name == "data" and str(data.parent) not in ("", ".") else f"{data}/"


def run(options: RunOptions, env_file: Path | None = None) -> int:
    """``openprem run``: the embedded install in the foreground."""
    from shared.logging import setup_logging, stop_logging

    if options.sandbox:
        os.environ.setdefault("WA_SANDBOX_DEMO", "1")  # chatd creates the demo phones
    try:
        settings, overrides = run_settings(env_file=env_file, sandbox=options.sandbox)
    except ConfigError as exc:
        return config_failure("openprem", exc)
    prepare_dirs(settings, sandbox=options.sandbox)
    setup_logging(settings.log, settings.paths.log_dir, "openprem")
    if overrides:
        log.info("embedded defaults overridden by the environment: %s", ", ".join(overrides))
    try:
        return run_process("openprem", serve(settings, options))
    finally:
        stop_logging()


# ----------------------------------------------------------------------------------------------- migrate


def migration_trees() -> list[tuple[str, Path, str]]:
    """(app, Alembic script location, version table) for coreapp and webapp (contracts §2)."""
    trees = []
    for app in ("coreapp", "webapp"):
        spec = importlib.util.find_spec(app)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"package {app} not found")
        location = Path(next(iter(spec.submodule_search_locations))) / "migrations"
        trees.append((app, location, f"alembic_version_{app}"))
    return trees


async def migrate_all(settings: Settings) -> None:
    from shared.db.migrate import migrate

    for app, location, table in migration_trees():
        if not location.is_dir():
            raise RuntimeError(f"{app} has no migrations at {location}")
        log.info("migrating %s (%s)", app, table)
        await migrate(settings.db, location, table)


def run_migrate(env_file: Path | None = None) -> int:
    """``openprem migrate``: both apps' migrations on the embedded database (or the one WA_DB_* names)."""
    from shared.logging import setup_logging, stop_logging

    try:
        settings, _ = run_settings(env_file=env_file, sandbox=False)
    except ConfigError as exc:
        return config_failure("openprem", exc)
    prepare_dirs(settings, sandbox=False)
    setup_logging(settings.log, settings.paths.log_dir, "openprem")
    try:
        if run_process("openprem migrate", migrate_all(settings)) != 0:
            return 1
    finally:
        stop_logging()
    print(f"migrations up to date ({settings.db.engine.value}, database {settings.db.database})")
    return 0
