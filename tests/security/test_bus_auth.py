"""The bus is authenticated (issue 12, point 1): a real Mosquitto with the compose broker's rules.

Each test starts a private broker with generated passwords for ``webapp``, ``coreapp`` and ``chatd`` and the
shipped ``conf/mosquitto.acl`` (``PrivateMosquitto.authenticated``), and attacks it the way anything else on the
compose network could: connecting without or with wrong credentials, injecting ``settings.backup`` into the
request topic, reading requests and replies, taking over webapp's session.  ``test_the_compose_broker_*`` runs
the shipped ``docker/mosquitto-entrypoint.sh`` and ``conf/mosquitto.conf`` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes

from chatd.ca import CertificateAuthority
from coreapp.api.registry import RpcRegistry
from shared.bus.contract import settings as settings_api
from shared.bus.mqtt import BusUnavailableError, MqttBus, _properties
from shared.bus.rpc import request_body
from shared.config import BusKind, BusSettings, ConfigError, Settings, load_settings
from tests.support.mosquitto import (
    ROOT,
    BrokerTls,
    PrivateMosquitto,
    mosquitto_binary,
    mosquitto_passwd_binary,
    skip_or_fail,
)

pytestmark = pytest.mark.timeout(120)

BACKUP_DATA = "the-keys-of-the-business"


def _need_mosquitto() -> None:
    if mosquitto_binary() is None or mosquitto_passwd_binary() is None:
        skip_or_fail("mosquitto and mosquitto_passwd are not installed")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    _need_mosquitto()
    broker = PrivateMosquitto.authenticated(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _instance() -> str:
    return f"s{uuid.uuid4().hex[:10]}"


BusMaker = Callable[..., MqttBus]


@pytest.fixture
async def buses() -> AsyncIterator[BusMaker]:
    """``make(broker, user, node_id, instance, password=<the user's>, **kw)``; every bus is stopped afterwards."""
    made: list[MqttBus] = []

    def make(
        broker: PrivateMosquitto, user: str | None, node_id: str, instance: str, password: str | None = None, **kw: Any
    ) -> MqttBus:
        kw.setdefault("session_expiry_s", 60)
        secret = password if password is not None else broker.users.get(user or "", "")
        settings = BusSettings(
            kind=BusKind.MQTT,
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            mqtt_username=user or "",
            mqtt_password=secret if user else "",
            instance=instance,
            rpc_timeout_s=5.0,
            **kw.pop("tls", {}),
        )
        bus = MqttBus(settings, node_id, **kw)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.stop()


def _backup_server(seen: list[str]) -> RpcRegistry:
    """coreapp's registry serving ``settings.backup`` (what an intruder wants: the keys), recording callers."""
    registry = RpcRegistry()

    async def backup(request: settings_api.BackupRequest) -> settings_api.Backup:
        seen.append(request.password)
        return settings_api.Backup(data=BACKUP_DATA)

    registry.add(settings_api.BACKUP, backup)
    return registry


async def _pair(buses: BusMaker, broker: PrivateMosquitto, instance: str, seen: list[str]) -> tuple[MqttBus, MqttBus]:
    server = buses(broker, "coreapp", "coreapp", instance)
    server.serve(_backup_server(seen).handle)
    client = buses(broker, "webapp", "webapp-1", instance)
    await server.start()
    await client.start()
    return server, client


@contextlib.asynccontextmanager
async def _raw(
    broker: PrivateMosquitto, user: str | None, password: str | None = None, **kw: Any
) -> AsyncIterator[aiomqtt.Client]:
    kw.setdefault("identifier", f"raw-{uuid.uuid4().hex[:8]}")
    secret = password if password is not None else broker.users.get(user or "")
    async with aiomqtt.Client(
        broker.host, broker.port, username=user, password=secret, protocol=aiomqtt.ProtocolVersion.V5, **kw
    ) as client:
        yield client


async def _messages(client: aiomqtt.Client, quiet_s: float) -> list[aiomqtt.Message]:
    """Everything the client receives until nothing more came for ``quiet_s``."""
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout(quiet_s):
                got.append(await anext(aiter(client.messages)))
    return got


# -- authentication --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("webapp", "not-the-password"), ("webapp", ""), ("nobody", "whatever")],
    ids=["anonymous", "wrong-password", "empty-password", "unknown-user"],
)
async def test_clients_without_valid_credentials_are_refused(
    broker: PrivateMosquitto, buses: BusMaker, user: str | None, password: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori|[Bb]ad user name or password"):
        async with _raw(broker, user, password):
            pass
    bus = buses(broker, user, "webapp-x", _instance(), password=password, start_timeout_s=1.5)
    with pytest.raises(BusUnavailableError, match=r"[Nn]ot authori|[Bb]ad user name or password"):
        await bus.start()


async def test_webapp_calls_and_coreapp_serves_with_their_credentials(
    broker: PrivateMosquitto, buses: BusMaker
) -> None:
    seen: list[str] = []
    server, client = await _pair(buses, broker, _instance(), seen)
    reply = await client.call(settings_api.BACKUP, settings_api.BackupRequest(password="backup-pass"))
    assert reply == settings_api.Backup(data=BACKUP_DATA)
    assert seen == ["backup-pass"]
    assert server.connected and client.connected


# -- authorisation (conf/mosquitto.acl) ------------------------------------------------------------------------


@pytest.mark.parametrize("intruder", ["chatd", "coreapp"])
async def test_no_identity_but_webapp_can_send_an_rpc(broker: PrivateMosquitto, buses: BusMaker, intruder: str) -> None:
    """An intruder publishes ``settings.backup`` to the request topic, asking for the reply on a topic it reads:
    a real coreapp-like server never receives it, and nothing comes back."""
    instance = _instance()
    seen: list[str] = []
    server, client = await _pair(buses, broker, instance, seen)
    async with _raw(broker, intruder) as attacker:
        reply_topic = f"openprem/{instance}/rpc/resp/{intruder}-raw"
        await attacker.subscribe(f"openprem/{instance}/rpc/resp/#", qos=1)
        props = _properties(PacketTypes.PUBLISH, ResponseTopic=reply_topic, CorrelationData=b"steal-the-keys")
        body = request_body(
            settings_api.BACKUP.name,
            settings_api.BACKUP.encode_request(settings_api.BackupRequest(password="intruder")),
        )
        await attacker.publish(server.request_topic, body, qos=1, properties=props)
        # Requests reach the server in order: once webapp's later one is answered, the intruder's would have run.
        reply = await client.call(settings_api.BACKUP, settings_api.BackupRequest(password="webapp"))
        assert reply.data == BACKUP_DATA
        stolen = await _messages(attacker, 0.7)
    assert seen == ["webapp"]
    assert [m for m in stolen if getattr(m.properties, "CorrelationData", None) == b"steal-the-keys"] == []
    assert all(BACKUP_DATA.encode() not in bytes(m.payload) for m in stolen if isinstance(m.payload, bytes))


async def test_other_identities_cannot_read_requests_replies_or_node_state(
    broker: PrivateMosquitto, buses: BusMaker
) -> None:
    """chatd subscribes to everything; a second webapp identity to the request topic (it may send, not read):
    while webapp and coreapp exchange a backup, neither sees a byte of it."""
    instance = _instance()
    seen: list[str] = []
    async with _raw(broker, "chatd") as chatd_spy, _raw(broker, "webapp") as webapp_spy:
        await chatd_spy.subscribe("#", qos=1)
        await chatd_spy.subscribe(f"openprem/{instance}/rpc/req", qos=1)
        await chatd_spy.subscribe(f"openprem/{instance}/rpc/resp/+", qos=1)
        await webapp_spy.subscribe(f"openprem/{instance}/rpc/req", qos=1)
        server, client = await _pair(buses, broker, instance, seen)
        await server.publish_state({"state": "ready"})
        for n in range(3):
            reply = await client.call(settings_api.BACKUP, settings_api.BackupRequest(password=f"p{n}"))
            assert reply.data == BACKUP_DATA
        leaked_to_chatd = await _messages(chatd_spy, 0.7)
        leaked_to_webapp = await _messages(webapp_spy, 0.1)
    assert seen == ["p0", "p1", "p2"]
    assert [m.topic.value for m in leaked_to_chatd] == []
    assert [m.topic.value for m in leaked_to_webapp] == []


async def test_taking_over_webapps_session_yields_no_replies(broker: PrivateMosquitto, buses: BusMaker) -> None:
    """chatd connects with webapp's client id and ``clean_start=False``: it inherits the session (and its
    subscription to webapp's reply topic), but the broker checks the reader's identity on every delivery."""
    instance = _instance()
    webapp = buses(broker, "webapp", "webapp-1", instance)
    await webapp.start()
    await webapp.stop()  # the persistent session (subscribed to the reply topic) stays on the broker
    props = _properties(PacketTypes.PUBLISH, CorrelationData=b"c")
    resume = {
        "identifier": webapp.client_id,
        "clean_start": False,
        "properties": _properties(PacketTypes.CONNECT, SessionExpiryInterval=60),  # keep it for the control
    }
    async with _raw(broker, "chatd", **resume) as thief:
        async with _raw(broker, "coreapp") as core:
            await core.publish(webapp.reply_topic, b'{"ok": {"data": "first"}}', qos=1, properties=props)
        stolen = await _messages(thief, 0.7)
    assert stolen == []
    # The control: webapp's own identity resuming that session does receive the next reply.
    async with _raw(broker, "webapp", **resume) as owner:
        async with _raw(broker, "coreapp") as core:
            await core.publish(webapp.reply_topic, b'{"ok": {"data": "second"}}', qos=1, properties=props)
        received = await _messages(owner, 0.7)
    assert [bytes(m.payload) for m in received if isinstance(m.payload, bytes)] == [b'{"ok": {"data": "second"}}']


# -- secrets ---------------------------------------------------------------------------------------------------


async def test_the_password_is_in_no_repr_and_no_log_line(
    broker: PrivateMosquitto, buses: BusMaker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = broker.users["webapp"]
    settings = load_settings(
        env={"WA_BUS": "MQTT", "WA_MQTT_USERNAME": "webapp", "WA_MQTT_PASSWORD": password, "WA_MQTT_PORT": "1"}
    )
    assert settings.bus.mqtt_password == password
    assert password not in repr(settings) and password not in str(settings) and password not in repr(settings.bus)
    good = buses(broker, "webapp", "webapp-1", _instance())
    await good.start()
    await good.stop()
    bad = buses(broker, "webapp", "webapp-2", _instance(), password=password + "x", start_timeout_s=1.0)
    with pytest.raises(BusUnavailableError) as info:
        await bad.start()
    assert password not in str(info.value)
    assert "connected to" in caplog.text and password not in caplog.text


def test_tls_settings_are_checked_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WA_MQTT_CA_FILE is set but WA_MQTT_TLS"):
        load_settings(env={"WA_MQTT_CA_FILE": str(tmp_path / "ca.pem")})
    with pytest.raises(ConfigError, match="WA_MQTT_PASSWORD is set but WA_MQTT_USERNAME"):
        load_settings(env={"WA_MQTT_PASSWORD": "secret-without-a-user"})
    bus = load_settings(env={"WA_MQTT_TLS": "true", "WA_MQTT_CA_FILE": str(tmp_path / "ca.pem")}).bus
    assert bus.mqtt_tls and bus.mqtt_ca_file == tmp_path / "ca.pem"
    assert Settings().bus.mqtt_tls is False


async def test_tls_round_trip_and_certificate_check(tmp_path: Path, buses: BusMaker) -> None:
    """Over TLS the credentials are encrypted; the client checks the broker's certificate against WA_MQTT_CA_FILE."""
    _need_mosquitto()
    ca = await asyncio.to_thread(CertificateAuthority.load_or_create, tmp_path / "ca", "mqtt.openprem.local")
    broker = PrivateMosquitto.authenticated(tmp_path / "mosquitto", tls=BrokerTls(ca.cert_file, ca.key_file))
    broker.start()
    try:
        instance = _instance()
        tls = {"mqtt_tls": True, "mqtt_ca_file": ca.ca_file}
        seen: list[str] = []
        server = buses(broker, "coreapp", "coreapp", instance, tls=tls)
        server.serve(_backup_server(seen).handle)
        client = buses(broker, "webapp", "webapp-1", instance, tls=tls)
        await server.start()
        await client.start()
        reply = await client.call(settings_api.BACKUP, settings_api.BackupRequest(password="over-tls"))
        assert reply.data == BACKUP_DATA and seen == ["over-tls"]

        plain = buses(broker, "webapp", "webapp-2", instance, start_timeout_s=1.0)
        with pytest.raises(BusUnavailableError):
            await plain.start()
        untrusted = buses(broker, "webapp", "webapp-3", instance, start_timeout_s=1.0, tls={"mqtt_tls": True})
        with pytest.raises(BusUnavailableError, match=r"(?i)certificate"):
            await untrusted.start()
        missing = buses(broker, "webapp", "webapp-4", instance, tls={**tls, "mqtt_ca_file": tmp_path / "nope.pem"})
        with pytest.raises(BusUnavailableError, match="MQTT CA file"):
            await missing.start()
    finally:
        broker.stop()


# -- the compose broker: docker/mosquitto-entrypoint.sh + conf/mosquitto.conf ------------------------------------


def _entrypoint(auth_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    return subprocess.run(
        ["sh", str(ROOT / "docker" / "mosquitto-entrypoint.sh"), "true"],
        env={
            **base,
            "MOSQUITTO_AUTH_DIR": str(auth_dir),
            "MOSQUITTO_ACL_SOURCE": str(ROOT / "conf" / "mosquitto.acl"),
            "MOSQUITTO_DATA_DIR": str(auth_dir.parent / "data"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _compose_config(broker: PrivateMosquitto, auth_dir: Path) -> str:
    """The shipped conf/mosquitto.conf with the container's paths and port replaced by the test's."""
    lines = []
    for line in (ROOT / "conf" / "mosquitto.conf").read_text().splitlines():
        line = line.replace("/mosquitto/auth", str(auth_dir)).replace("/mosquitto/data", str(broker.workdir / "data"))
        if line == "listener 1883":
            line = f"listener {broker.port} {broker.host}"
        elif line.startswith("log_dest"):
            line = f"log_dest file {broker.log_file}"
        lines.append(line)
    if os.geteuid() == 0:
        lines.append("user root")
    return "\n".join(lines) + "\n"


def test_the_compose_entrypoint_refuses_to_start_without_both_passwords(tmp_path: Path) -> None:
    _need_mosquitto()
    for env in (
        {},
        {"WA_MQTT_WEBAPP_PASSWORD": "w-secret"},
        {"WA_MQTT_WEBAPP_PASSWORD": "", "WA_MQTT_COREAPP_PASSWORD": "c"},
    ):
        done = _entrypoint(tmp_path / "auth", env)
        assert done.returncode == 1, done
        assert "CRITICAL" in done.stderr and "compose/.env" in done.stderr
        assert not (tmp_path / "auth" / "passwd").exists()


async def test_the_compose_broker_refuses_anonymous_clients(tmp_path: Path, buses: BusMaker) -> None:
    """The shipped entrypoint writes the password file, the shipped config uses it and the ACL: anonymous clients
    are refused, webapp and coreapp talk with the passwords of compose/.env, and the health check works."""
    _need_mosquitto()
    auth_dir = tmp_path / "auth"
    passwords = {"webapp": "webapp-" + uuid.uuid4().hex, "coreapp": "coreapp-" + uuid.uuid4().hex}
    done = _entrypoint(
        auth_dir, {"WA_MQTT_WEBAPP_PASSWORD": passwords["webapp"], "WA_MQTT_COREAPP_PASSWORD": passwords["coreapp"]}
    )
    assert done.returncode == 0, done.stderr
    text = (auth_dir / "passwd").read_text()
    assert passwords["webapp"] not in text and passwords["coreapp"] not in text  # hashed
    assert (auth_dir / "passwd").stat().st_mode & 0o077 == 0
    broker = PrivateMosquitto(tmp_path / "mosquitto", users=passwords)
    broker.config.write_text(_compose_config(broker, auth_dir))
    broker.start()
    try:
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori"):
            async with _raw(broker, None):
                pass
        seen: list[str] = []
        _, client = await _pair(buses, broker, _instance(), seen)
        assert (await client.call(settings_api.BACKUP, settings_api.BackupRequest(password="p"))).data == BACKUP_DATA
        # The container's health check, as compose runs it (plus the test's port).
        check = subprocess.run(
            [
                "mosquitto_sub",
                "-h",
                broker.host,
                "-p",
                str(broker.port),
                "-t",
                "$SYS/broker/uptime",
                "-C",
                "1",
                "-W",
                "5",
            ],
            env={**os.environ, "XDG_CONFIG_HOME": str(auth_dir)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        assert "seconds" in check.stdout
    finally:
        broker.stop()
