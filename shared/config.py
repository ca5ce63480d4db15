"""Typed, frozen configuration read from ``conf/whatsapp.conf`` (an env file) and the environment.

Every variable has one explicit name (the ``WA_*`` names of the On-Prem reference plus ours), listed in
``conf/whatsapp.conf`` with its default.  ``load_settings`` validates everything at once and raises a
``ConfigError`` naming every bad variable, so a misconfigured container fails at start with one clear message.
Components receive only their own section.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ConfigError(Exception):
    """Raised at start when one or more variables are invalid; the message names each of them."""


class DbEngine(enum.StrEnum):
    MYSQL = "MYSQL"
    PGSQL = "PGSQL"
    SQLITE = "SQLITE"


class BusKind(enum.StrEnum):
    LOCAL = "LOCAL"
    MQTT = "MQTT"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Passwords that ship in examples and tutorials (ours included): a server database must not run on one, since
# anyone who reads the same page knows it.  Compared case-insensitively.
KNOWN_DEFAULT_DB_PASSWORDS = frozenset(
    {
        "openprem-change-me",  # conf/whatsapp.conf before compose/.env held the secrets
        "openprem",
        "change-me",
        "changeme",
        "change_me",
        "password",
        "passw0rd",
        "secret",
        "root",
        "toor",
        "admin",
        "mysql",
        "mariadb",
        "postgres",
        "example",
        "default",
        "123456",
        "12345678",
    }
)


class DbSettings(_Section):
    engine: DbEngine = DbEngine.SQLITE
    hostname: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    username: str = "root"
    password: str = Field(default="", repr=False)  # a secret: never in repr or logs
    name_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$", max_length=32)
    sqlite_path: Path = Path("var/data/openprem.db")
    pool_size: int = Field(default=10, ge=1, le=500)
    connection_idle_timeout_ms: int = Field(default=180000, ge=1000)
    startup_wait_s: float = Field(default=120.0, ge=0)

    @field_validator("password")
    @classmethod
    def _not_a_known_default(cls, value: str, info: ValidationInfo) -> str:
        # A database server is reachable by more than this process; SQLite is a file of the embedded install.
        # Never put the value in the message: it would reach the start-up error line.
        server = info.data.get("engine", DbEngine.SQLITE) is not DbEngine.SQLITE
        if server and value.strip().lower() in KNOWN_DEFAULT_DB_PASSWORDS:
            raise ValueError(
                "is a known default password; set a unique one (e.g. `openssl rand -hex 24`) for the database "
                "user and in compose/.env"
            )
        return value

    @property
    def database(self) -> str:
        """The one database this install uses (prefixed so several installs can share a server)."""
        return f"{self.name_prefix}openprem"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 5432 if self.engine is DbEngine.PGSQL else 3306

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL; the password is percent-encoded so any character works."""
        if self.engine is DbEngine.SQLITE:
            return f"sqlite+aiosqlite:///{self.sqlite_path}"
        driver = "postgresql+psycopg" if self.engine is DbEngine.PGSQL else "mysql+asyncmy"
        auth = quote(self.username, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        host = self.hostname
        name = self.database if database is None else database
        return f"{driver}://{auth}@{host}:{self.effective_port}/{name}"


class BusSettings(_Section):
    kind: BusKind = BusKind.LOCAL
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str = ""
    """The broker identity (compose: ``webapp`` or ``coreapp``, whose rights ``conf/mosquitto.acl`` sets)."""
    mqtt_password: str = Field(default="", repr=False)  # a secret: never in repr or logs
    mqtt_tls: bool = False
    """Connect over TLS (Mosquitto's 8883 listener), checking the broker's certificate and host name."""
    mqtt_ca_file: Path | None = None
    """PEM of the CA that signs the broker's certificate; unset: the system CAs."""
    instance: str = Field(default="openprem", pattern=r"^[A-Za-z0-9_.-]+$")
    rpc_timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _credentials_and_tls(self) -> Self:
        if self.mqtt_password and not self.mqtt_username:
            raise ValueError("WA_MQTT_PASSWORD is set but WA_MQTT_USERNAME is not")
        if self.mqtt_ca_file is not None and not self.mqtt_tls:
            raise ValueError("WA_MQTT_CA_FILE is set but WA_MQTT_TLS is not true: the CA would not be used")
        return self


class ChatSettings(_Section):
    """How coreapp reaches the network (chatd in the sandbox)."""

    host: str = "127.0.0.1"
    port: int = Field(default=5222, ge=1, le=65535)
    fallback_port: int = Field(default=443, ge=1, le=65535)
    ca_file: Path | None = None
    server_name: str = "chat.openprem.local"
    connect_timeout_s: float = Field(default=5.0, gt=0)
    ping_interval_s: float = Field(default=30.0, gt=0)
    offline_drain_timeout_s: float = Field(default=360.0, gt=0)
    client_version: str = "2.41.2"
    media_port: int | None = Field(default=None, ge=1, le=65535)
    """HTTPS port of the network's media host on ``host``; unset: the port the network announces at login."""


class PathSettings(_Section):
    data_dir: Path = Path("var/data")
    media_dir: Path = Path("var/media")
    log_dir: Path = Path("var/log")


API_KEY_MIN_LENGTH = 32
_API_KEY = re.compile(rf"[\x21-\x7e]{{{API_KEY_MIN_LENGTH},}}")
JWT_KEY_MIN_BYTES = 32
"""HS256 tokens can be brute-forced offline from one token when the key is short; below this a webapp refuses to
start."""


class WebSettings(_Section):
    host: str = "0.0.0.0"
    port: int = Field(default=443, ge=1, le=65535)
    jwt_crypto_key: str = Field(default="", repr=False)  # a secret: never in repr or logs
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = "localhost"
    token_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    allow_http_loopback_webhooks: bool = False
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    api_key_sha256: bytes | None = Field(default=None, repr=False, validation_alias="api_key")
    """SHA-256 of ``WA_WEB_API_KEY`` (given as ``api_key``): the key ``Authorization: Apikey <key>`` must carry on
    ``/v1/health``, ``/v1/stats/*`` and ``/metrics``.  Only the digest is kept (never the key, never in ``repr``);
    ``None``: API keys are off."""

    @field_validator("api_key_sha256", mode="before")
    @classmethod
    def _hash_api_key(cls, value: object) -> bytes | None:
        # Never put the value in the message: it would reach the start-up error line.
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _API_KEY.fullmatch(value):
            raise ValueError(
                f"must be at least {API_KEY_MIN_LENGTH} printable ASCII characters without spaces "
                "(e.g. `openssl rand -hex 32`)"
            )
        return hashlib.sha256(value.encode("ascii")).digest()

    token_cache_ttl_s: float = Field(default=5.0, ge=0, le=300)
    """Seconds a webapp reuses its own check of a bearer token: a token revoked through another webapp is refused
    here within this long (at once on the webapp that revoked it); 0: every request reads the database."""
    login_user_failures: int = Field(default=10, ge=1)
    """Wrong logins (or wrong ``current_password``) for one user within ``login_window_s`` before that user's
    logins answer 429 (1015) until the window ends."""
    login_address_failures: int = Field(default=50, ge=1)
    """The same per client address (an IPv6 client by its /64)."""
    login_window_s: float = Field(default=300.0, gt=0)
    password_hash_concurrency: int = Field(default=2, ge=1, le=64)
    """Argon2 hashes/verifications at once per webapp; each holds 64 MiB while it runs."""
    password_hash_queue: int = Field(default=32, ge=0)
    """Password checks that may wait for a slot; beyond them a login answers 503 (1016) at once."""
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    """Peers (addresses or networks) whose ``X-Forwarded-For`` names the client; empty: the peer is the client."""

    @field_validator("jwt_crypto_key")
    @classmethod
    def _long_enough_jwt_key(cls, value: str) -> str:
        # Never put the value in the message: it would reach the start-up error line.
        if value and len(value.encode("utf-8")) < JWT_KEY_MIN_BYTES:
            raise ValueError(f"must be at least {JWT_KEY_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


_HOST_NAME = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class FetchSettings(_Section):
    """Where coreapp may send requests whose target a client names (media links, webhook URLs).

    By default only public addresses (``shared.netguard``); ``allow`` admits internal hosts a deployment fetches
    from on purpose, ``allow_loopback`` this machine (the embedded launcher turns it on, nothing else does)."""

    allow: tuple[str, ...] = ()
    """CIDRs (``10.1.2.0/24``, ``fd00::/8``, a bare address) and host names (``media.corp``, ``*.corp``: subdomains)."""
    allow_loopback: bool = False

    @field_validator("allow", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("allow")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for entry in value:
            try:
                out.append(str(ipaddress.ip_network(entry, strict=False)))
                continue
            except ValueError:
                pass
            name = entry.lower().rstrip(".")
            if not _HOST_NAME.fullmatch(name):
                raise ValueError(f"{entry!r} is neither a CIDR nor a host name")
            out.append(name)
        return tuple(out)


class SandboxSettings(_Section):
    """chatd: the network sandbox."""

    host: str = "0.0.0.0"
    port: int = Field(default=5222, ge=1, le=65535)
    fallback_port: int = Field(default=443, ge=1, le=65535)
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=9091, ge=1, le=65535)
    data_dir: Path = Path("var/chatd")
    server_name: str = "chat.openprem.local"
    receipt_delay_s: float = Field(default=0.2, ge=0)
    read_delay_s: float = Field(default=0.5, ge=0)
    media_port: int = Field(default=9092, ge=1, le=65535)
    inbox_limit: int = Field(default=1000, ge=1)
    """Messages each simulated phone keeps in its inbox (the oldest go first), so a long run stays bounded."""
    seen_limit: int = Field(default=200_000, ge=10)
    """Message ids chatd remembers to drop resends (a client resends only what it had not seen acked)."""


class LogSettings(_Section):
    level: str = "INFO"
    to_file: bool = False

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper


class MaintenanceSettings(_Section):
    """coreapp's housekeeping: periodic message GC and the free-disk-space guard (DESIGN §3); webapp checks its
    media and data directories against the same ``disk_min_free_mb``."""

    gc_interval_h: float = Field(default=3.0, gt=0)
    """Mean hours between periodic message GC runs; each wait is randomised by ``gc_jitter``."""
    gc_jitter: float = Field(default=0.5, ge=0, lt=1)
    """Fraction of ``gc_interval_h`` each wait may differ by (0.5: between 1.5 h and 4.5 h for 3 h)."""
    gc_inbound_retention_days: float = Field(default=30.0, gt=0)
    """Inbound messages are kept this long (so they can still be marked read)."""
    disk_min_free_mb: float = Field(default=10.0, ge=0)
    disk_check_interval_s: float = Field(default=10.0, gt=0)


class OutboxSettings(_Section):
    """Bounds of coreapp's webhook outbox (``coreapp.webhooks.dispatcher``): a callback that keeps failing is not
    retried forever, it moves to the dead-letter list, from which an admin can replay it."""

    max_age_days: float = Field(default=7.0, gt=0)
    """A failed attempt at an event older than this dead-letters it (7 days, like the Cloud API's retries)."""
    max_attempts: int = Field(default=0, ge=0)
    """A failed attempt number this high dead-letters the event; 0: no limit (the age decides)."""
    dead_retention_days: float = Field(default=7.0, gt=0)
    """Dead-lettered events are kept (and replayable) this long, then deleted."""


KEYSTORE_KEY_BYTES = 32
DEFAULT_KEYSTORE_KEY_FILE = Path("keys/store.key")
"""Relative to ``WA_DATA_DIR``."""


class KeystoreSettings(_Section):
    """coreapp's key-store key: it seals the identity and Signal sessions in the database (AES-256-GCM), so the
    database alone does not reveal them.  It lives outside the database: ``key`` (``WA_KEYSTORE_KEY``) when set,
    else the file ``key_file`` (made on the first start of an install that has no sealed keys yet)."""

    key: bytes | None = Field(default=None, repr=False)  # a secret: never in repr or logs
    key_file: Path | None = None
    """``None``: ``<WA_DATA_DIR>/keys/store.key`` (``key_file_in``)."""

    @field_validator("key", mode="before")
    @classmethod
    def _decode_key(cls, value: object) -> bytes | None:
        # Never put the value in the message: it would reach the start-up error line.
        if value is None or value == "":
            return None
        raw = value if isinstance(value, bytes) else b""
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
        if len(raw) != KEYSTORE_KEY_BYTES:
            raise ValueError(
                f"must be the base64 of {KEYSTORE_KEY_BYTES} random bytes (e.g. `openssl rand -base64 32`)"
            )
        return raw

    def key_file_in(self, data_dir: Path) -> Path:
        return self.key_file if self.key_file is not None else data_dir / DEFAULT_KEYSTORE_KEY_FILE


class HaSettings(_Section):
    """Multiconnect / high availability (reference §5, ``docs/architecture.md``).  Off: one coreapp serves the
    number.  On (every webapp, master and coreapp of the deployment): masters (``master``) race for the master
    lease, other coreapps for shard leases; webapps route each call to the node that holds its lease.

    The lease timing decides failover: a holder renews every ``renew_every_s`` and gives the role up
    ``margin_s`` before ``lease_ttl_s`` runs out; a successor may take over once the database's clock passed the
    expiry, so a dead owner is replaced within about ``lease_ttl_s`` plus one take-over attempt.  The On-Prem
    application settings ``heartbeat_interval`` / ``unhealthy_interval``, when an admin sets them, replace
    ``renew_every_s`` / ``lease_ttl_s`` (read at every take)."""

    multiconnect: bool = False
    master: bool = False
    node_id: str = Field(default_factory=lambda: socket.gethostname().split(".")[0] or "node")
    """This process's name in ``/v1/health``, the leases and the bus (``[A-Za-z0-9_.-]``; unique per process)."""
    lease_ttl_s: float = Field(default=6.0, gt=0, le=3600)
    renew_every_s: float = Field(default=1.5, gt=0, le=3600)
    margin_s: float = Field(default=1.5, gt=0, le=600)

    @field_validator("node_id")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError("must be 1-64 characters of A-Z a-z 0-9 _ . -")
        return value

    @model_validator(mode="after")
    def _renewals_inside_the_lease(self) -> Self:
        if not self.renew_every_s < self.lease_ttl_s - self.margin_s:
            raise ValueError("WA_HA_RENEW_INTERVAL must be below WA_HA_LEASE_TTL minus WA_HA_MARGIN")
        return self


class Settings(_Section):
    db: DbSettings = DbSettings()
    bus: BusSettings = BusSettings()
    chat: ChatSettings = ChatSettings()
    paths: PathSettings = PathSettings()
    web: WebSettings = WebSettings()
    sandbox: SandboxSettings = SandboxSettings()
    log: LogSettings = LogSettings()
    maintenance: MaintenanceSettings = MaintenanceSettings()
    fetch: FetchSettings = FetchSettings()
    outbox: OutboxSettings = OutboxSettings()
    keystore: KeystoreSettings = KeystoreSettings()
    ha: HaSettings = HaSettings()
    embedded: bool = False

    @model_validator(mode="after")
    def _mysql_needs_host(self) -> Self:
        if self.db.engine is not DbEngine.SQLITE and not self.db.hostname:
            raise ValueError("WA_DB_HOSTNAME is required when WA_DB_ENGINE is MYSQL or PGSQL")
        return self


# One explicit table: environment variable -> (section, field).
ENV_VARS: dict[str, tuple[str, str]] = {
    "WA_DB_ENGINE": ("db", "engine"),
    "WA_DB_HOSTNAME": ("db", "hostname"),
    "WA_DB_PORT": ("db", "port"),
    "WA_DB_USERNAME": ("db", "username"),
    "WA_DB_PASSWORD": ("db", "password"),
    "WA_DB_NAME_PREFIX": ("db", "name_prefix"),
    "WA_DB_SQLITE_PATH": ("db", "sqlite_path"),
    "WA_DB_POOL_SIZE": ("db", "pool_size"),
    "WA_DB_CONNECTION_IDLE_TIMEOUT": ("db", "connection_idle_timeout_ms"),
    "WA_DB_STARTUP_WAIT": ("db", "startup_wait_s"),
    "WA_BUS": ("bus", "kind"),
    "WA_MQTT_HOSTNAME": ("bus", "mqtt_host"),
    "WA_MQTT_PORT": ("bus", "mqtt_port"),
    "WA_MQTT_USERNAME": ("bus", "mqtt_username"),
    "WA_MQTT_PASSWORD": ("bus", "mqtt_password"),
    "WA_MQTT_TLS": ("bus", "mqtt_tls"),
    "WA_MQTT_CA_FILE": ("bus", "mqtt_ca_file"),
    "WA_BUS_INSTANCE": ("bus", "instance"),
    "WA_BUS_RPC_TIMEOUT": ("bus", "rpc_timeout_s"),
    "WA_CHAT_HOSTNAME": ("chat", "host"),
    "WA_CHAT_PORT": ("chat", "port"),
    "WA_CHAT_FALLBACK_PORT": ("chat", "fallback_port"),
    "WA_CHAT_CA_FILE": ("chat", "ca_file"),
    "WA_CHAT_SERVERNAME": ("chat", "server_name"),
    "WA_CHAT_CONNECT_TIMEOUT": ("chat", "connect_timeout_s"),
    "WA_CHAT_PING_INTERVAL": ("chat", "ping_interval_s"),
    "WA_OFFLINE_DRAIN_TIMEOUT": ("chat", "offline_drain_timeout_s"),
    "WA_CLIENT_VERSION": ("chat", "client_version"),
    "WA_CHAT_MEDIA_PORT": ("chat", "media_port"),
    "WA_DATA_DIR": ("paths", "data_dir"),
    "WA_MEDIA_DIR": ("paths", "media_dir"),
    "WA_LOG_DIR": ("paths", "log_dir"),
    "WA_WEB_HOSTNAME": ("web", "host"),
    "WA_WEB_PORT": ("web", "port"),
    "WA_WEB_JWT_CRYPTO_KEY": ("web", "jwt_crypto_key"),
    "WA_WEB_CERT_FILE": ("web", "cert_file"),
    "WA_WEB_KEY_FILE": ("web", "key_file"),
    "WA_WEB_SERVERNAME": ("web", "server_name"),
    "WA_WEB_TOKEN_TTL": ("web", "token_ttl_s"),
    "WA_WEBHOOK_ALLOW_HTTP_LOOPBACK": ("web", "allow_http_loopback_webhooks"),
    "WA_MEDIA_MAX_UPLOAD_BYTES": ("web", "max_upload_bytes"),
    "WA_WEB_API_KEY": ("web", "api_key"),
    "WA_WEB_TOKEN_CACHE_TTL": ("web", "token_cache_ttl_s"),
    "WA_WEB_LOGIN_USER_FAILURES": ("web", "login_user_failures"),
    "WA_WEB_LOGIN_ADDRESS_FAILURES": ("web", "login_address_failures"),
    "WA_WEB_LOGIN_WINDOW": ("web", "login_window_s"),
    "WA_WEB_PASSWORD_HASH_CONCURRENCY": ("web", "password_hash_concurrency"),
    "WA_WEB_PASSWORD_HASH_QUEUE": ("web", "password_hash_queue"),
    "WA_WEB_TRUSTED_PROXIES": ("web", "trusted_proxies"),
    "WA_SANDBOX_HOSTNAME": ("sandbox", "host"),
    "WA_SANDBOX_PORT": ("sandbox", "port"),
    "WA_SANDBOX_FALLBACK_PORT": ("sandbox", "fallback_port"),
    "WA_SANDBOX_ADMIN_HOSTNAME": ("sandbox", "admin_host"),
    "WA_SANDBOX_ADMIN_PORT": ("sandbox", "admin_port"),
    "WA_SANDBOX_DATA_DIR": ("sandbox", "data_dir"),
    "WA_SANDBOX_SERVERNAME": ("sandbox", "server_name"),
    "WA_SANDBOX_RECEIPT_DELAY": ("sandbox", "receipt_delay_s"),
    "WA_SANDBOX_READ_DELAY": ("sandbox", "read_delay_s"),
    "WA_SANDBOX_MEDIA_PORT": ("sandbox", "media_port"),
    "WA_SANDBOX_INBOX_LIMIT": ("sandbox", "inbox_limit"),
    "WA_SANDBOX_SEEN_LIMIT": ("sandbox", "seen_limit"),
    "WA_LOG_LEVEL": ("log", "level"),
    "WA_LOG_TO_FILE": ("log", "to_file"),
    "WA_GC_INTERVAL_H": ("maintenance", "gc_interval_h"),
    "WA_GC_JITTER": ("maintenance", "gc_jitter"),
    "WA_GC_INBOUND_RETENTION_DAYS": ("maintenance", "gc_inbound_retention_days"),
    "WA_DISK_MIN_FREE_MB": ("maintenance", "disk_min_free_mb"),
    "WA_DISK_CHECK_INTERVAL": ("maintenance", "disk_check_interval_s"),
    "WA_FETCH_ALLOW": ("fetch", "allow"),
    "WA_FETCH_ALLOW_LOOPBACK": ("fetch", "allow_loopback"),
    "WA_WEBHOOK_MAX_AGE_DAYS": ("outbox", "max_age_days"),
    "WA_WEBHOOK_MAX_ATTEMPTS": ("outbox", "max_attempts"),
    "WA_WEBHOOK_DEAD_RETENTION_DAYS": ("outbox", "dead_retention_days"),
    "WA_KEYSTORE_KEY": ("keystore", "key"),
    "WA_KEYSTORE_KEY_FILE": ("keystore", "key_file"),
    "WA_APP_MULTICONNECT": ("ha", "multiconnect"),
    "WA_MASTER_NODE": ("ha", "master"),
    "WA_NODE_ID": ("ha", "node_id"),
    "WA_HA_LEASE_TTL": ("ha", "lease_ttl_s"),
    "WA_HA_RENEW_INTERVAL": ("ha", "renew_every_s"),
    "WA_HA_MARGIN": ("ha", "margin_s"),
    "WA_EMBEDDED": ("", "embedded"),
}

# Reference variables accepted for compatibility but informational only.
_INFORMATIONAL = {
    "WA_RUNNING_ENV",
    "WA_RUNNING_ENV_VERSION",
    "ORCHESTRATION",
    "WA_API_VERSION",
    "WACORE_HOSTNAME",
    "WA_DB_PERSISTENT",
    "WA_CONFIG_ON_DB",
    "WA_DB_UPGRADE",
    "COREAPP_HOSTNAME",
    "COREAPP_EXTERNAL_PORTS",
    "WEBAPP_HOSTNAME",
    "WEBAPP_EXTERNAL_PORTS",
    "WA_DB_SSL_CA",
    "WA_DB_SSL_CERT",
    "WA_DB_SSL_KEY",
}


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a docker-style env file: ``NAME=value`` lines, ``#`` comments, no shell expansion.

    Docker's ``env_file`` takes the value verbatim, so we do too (quotes are kept unless the whole value is
    wrapped in one matching pair).
    """
    values: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{lineno}: expected NAME=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def load_settings(
    env: Mapping[str, str] | None = None,
    env_file: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build ``Settings`` from an env file, then the process environment, then explicit overrides.

    Empty values mean "use the default", as in docker env files where a variable is listed but unset.
    """
    merged: dict[str, str] = {}
    if env_file is not None and env_file.exists():
        merged.update(read_env_file(env_file))
    merged.update({k: v for k, v in (os.environ if env is None else env).items() if k in ENV_VARS})
    if overrides:
        merged.update(overrides)

    tree: dict[str, Any] = {}
    for name, value in merged.items():
        if name not in ENV_VARS or value == "":
            continue
        section, field = ENV_VARS[name]
        if section:
            tree.setdefault(section, {})[field] = value
        else:
            tree[field] = value
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    reverse = {v: k for k, v in ENV_VARS.items()}
    problems = []
    for err in exc.errors():
        loc = tuple(str(part) for part in err["loc"])
        key = (loc[0], loc[1]) if len(loc) >= 2 else ("", loc[0]) if loc else ("", "")
        name = reverse.get(key, ".".join(loc) or "settings")
        problems.append(f"{name}: {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)


def default_env_file() -> Path | None:
    """``WA_CONFIG_FILE`` if set, else ``conf/whatsapp.conf`` when it exists in the working directory."""
    explicit = os.environ.get("WA_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    candidate = Path("conf/whatsapp.conf")
    return candidate if candidate.exists() else None


def is_informational(name: str) -> bool:
    """Whether a reference variable is accepted but has no effect here."""
    return name in _INFORMATIONAL
