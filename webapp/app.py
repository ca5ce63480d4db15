"""The webapp composition root: DB → migrations → users → keys → TLS → disk check → HTTPS server (DESIGN §3, §11.1).

``WebApp`` does not own the bus: ``python -m webapp`` (or the embedded launcher, which shares one
``LocalBus`` with coreapp) starts it before and stops it after.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from argon2 import PasswordHasher

from shared.bus.base import Bus
from shared.config import Settings
from shared.db.engine import Database
from shared.db.migrate import migrate
from shared.idempotency import TTL
from shared.media_files import MediaFiles
from shared.netguard import AddressPolicy
from shared.tasks import TaskSupervisor
from webapp import console
from webapp.access_log import AccessLogger
from webapp.auth import API_KEY_ROUTES, Authenticator, load_jwt_key
from webapp.certs import SERVER_TLS_KEY, ServerTls
from webapp.cluster import ClusterView
from webapp.disk import WebDiskGuard
from webapp.envelope import MAX_JSON_BODY_BYTES
from webapp.metrics import WebMetrics
from webapp.middleware import auth_middleware, error_middleware, metrics_middleware
from webapp.protocol import EnvelopeRunner
from webapp.routes import ROUTES
from webapp.routes.media import MEDIA_FILES_KEY, MEDIA_KEYS_KEY
from webapp.routing import serve_trailing_slashes
from webapp.state import (
    AUTH_KEY,
    BUS_KEY,
    CLUSTER_KEY,
    DISK_KEY,
    METRICS_KEY,
    RPC_TIMEOUT_KEY,
    TARGETS_KEY,
    VERSION_KEY,
    WEB_SETTINGS_KEY,
)
from webapp.storage import WebStorage
from webapp.tls import ensure_certificate, server_context

log = logging.getLogger("openprem.webapp")

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_webapp"
TOKEN_PURGE_INTERVAL_S = 3600.0
SHUTDOWN_TIMEOUT_S = 10.0


async def run_migrations(settings: Settings) -> None:
    """The webapp tables only (``python -m webapp migrate`` and every start)."""
    await migrate(settings.db, MIGRATIONS_DIR, VERSION_TABLE)


def build_app(settings: Settings, bus: Bus, auth: Authenticator, metrics: WebMetrics) -> web.Application:
    """The aiohttp application: middlewares outermost first, typed state, one route table per resource; a
    trailing slash resolves to the route without it (``webapp.routing``)."""
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, auth_middleware],
        client_max_size=MAX_JSON_BODY_BYTES,
    )
    app[VERSION_KEY] = settings.chat.client_version
    app[WEB_SETTINGS_KEY] = settings.web
    app[TARGETS_KEY] = AddressPolicy.from_settings(settings.fetch)
    app[BUS_KEY] = bus
    app[RPC_TIMEOUT_KEY] = settings.bus.rpc_timeout_s
    app[AUTH_KEY] = auth
    app[METRICS_KEY] = metrics
    app[MEDIA_FILES_KEY] = MediaFiles(settings.paths.media_dir)
    disk = WebDiskGuard(
        {"data": settings.paths.data_dir, "media": settings.paths.media_dir},
        settings.maintenance.disk_min_free_mb,
        interval_s=settings.maintenance.disk_check_interval_s,
        critical_gauge=metrics.disk_critical,
        free_gauge=metrics.disk_free_bytes,
    )
    metrics.disk_min_free_bytes.set_function(lambda: disk.min_free_bytes)  # a plain attribute tests may move
    app[DISK_KEY] = disk
    for table in ROUTES:
        app.add_routes(table)
    app.add_routes(console.routes)  # the page and its assets, outside /v1 (``webapp.console``)
    serve_trailing_slashes(app)
    return app


class WebApp:
    """The ``/v1`` REST API process (contracts §1)."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        *,
        password_hasher: PasswordHasher | None = None,
        cluster: ClusterView | None = None,
    ) -> None:
        """``cluster``: multiconnect (fed by the bus's node states before the bus starts)."""
        self._cluster = cluster
        self._settings = settings
        self._bus = bus
        self._hasher = password_hasher or PasswordHasher()
        self._supervisor = TaskSupervisor("webapp")
        self._db: Database | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.metrics = WebMetrics()
        self.storage: WebStorage | None = None
        self.auth: Authenticator | None = None
        self.disk: WebDiskGuard | None = None

    async def start(self) -> None:
        settings = self._settings
        try:
            jwt_key = await asyncio.to_thread(load_jwt_key, settings.web, settings.paths.data_dir)  # first: no DB
            await run_migrations(settings)
            self._db = await Database.connect(settings.db)
            self.storage = storage = WebStorage(self._db)
            self.auth = Authenticator(self.storage, jwt_key, settings.web, self._hasher)
            await self.auth.ensure_default_admin()
            cert, key = await asyncio.to_thread(ensure_certificate, settings.web, settings.paths.data_dir)
            ssl_context = await asyncio.to_thread(server_context, cert, key)

            app = build_app(settings, self._bus, self.auth, self.metrics)
            if self._cluster is not None:
                app[CLUSTER_KEY] = self._cluster
            configured = settings.web.cert_file is not None
            app[SERVER_TLS_KEY] = ServerTls(ssl_context, settings.paths.data_dir / "web", cert, configured=configured)
            app[MEDIA_KEYS_KEY] = storage
            self.disk = app[DISK_KEY]
            await self.disk.check()  # before listening: a full disk is known from the first request
            self._runner = EnvelopeRunner(
                app,
                version=settings.chat.client_version,
                access_log=logging.getLogger("openprem.webapp.access"),
                access_log_class=AccessLogger,
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, settings.web.host, settings.web.port, ssl_context=ssl_context)
            await site.start()
            self._port = _bound_port(self._runner, settings.web.port)
            self.disk.start(self._supervisor)
            self._supervisor.spawn_forever("purge-expired-tokens", self._purge_expired_tokens)
            self._supervisor.spawn_forever("purge-media-keys", self._purge_media_keys)
        except BaseException:
            await self.stop()
            raise
        log.info("webapp listening on %s (certificate %s)", self.url, cert)
        if settings.web.api_key_sha256 is not None:
            log.info("WA_WEB_API_KEY is set: Apikey authorization accepted on %s", ", ".join(sorted(API_KEY_ROUTES)))

    async def stop(self) -> None:
        await self._supervisor.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def url(self) -> str:
        """``https://<host>:<port>`` as a client on this machine would reach it."""
        host = self._settings.web.host
        if host in ("", "0.0.0.0", "::"):
            host = "localhost"
        elif ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self._port or self._settings.web.port}"

    async def _purge_expired_tokens(self) -> None:
        """Expired tokens can never authenticate; drop them hourly (jittered so webapps do not align)."""
        await asyncio.sleep(TOKEN_PURGE_INTERVAL_S * random.uniform(0.8, 1.2))
        if self.storage is not None:
            removed = await self.storage.purge_expired_tokens()
            if removed:
                log.info("purged %d expired tokens", removed)

    async def _purge_media_keys(self) -> None:
        """Upload keys older than ``shared.idempotency.TTL`` no longer count; drop them hourly (jittered)."""
        await asyncio.sleep(TOKEN_PURGE_INTERVAL_S * random.uniform(0.8, 1.2))
        if self.storage is not None:
            removed = await self.storage.purge_media_keys(datetime.now(UTC) - TTL)
            if removed:
                log.info("purged %d media idempotency keys", removed)


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
