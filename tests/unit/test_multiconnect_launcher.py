"""The multiconnect launcher without starting anything: nodes, environments, ports, the broker files, the CLI.

(The live cluster, with SIGKILL/SIGSTOP of nodes, is tested in tests/ha once the nodes take their roles.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest

from openprem import __main__ as cli
from openprem import ports
from openprem.broker import mosquitto_config, mosquitto_passwd_binary, write_password_file
from openprem.multiconnect import ACL_FILE, SHARD_COUNTS, Cluster, Node, Role, db_env, plan_nodes
from openprem.multiconnect_run import (
    MulticonnectOptions,
    banner,
    build_cluster,
    db_settings,
    preferred_ports,
    quickstart_commands,
)
from openprem.procs import NodeProcess
from openprem.quickstart import commands
from shared.config import DbEngine, DbSettings, load_settings

MYSQL = DbSettings(engine=DbEngine.MYSQL, hostname="127.0.0.1", username="root", name_prefix="mc_")


def _cluster(tmp_path: Path, **kwargs: object) -> Cluster:
    return Cluster(tmp_path / "cluster", MYSQL, **kwargs)  # type: ignore[arg-type]


def test_plan_nodes() -> None:
    nodes = plan_nodes(2, 3, 2)
    assert [n.name for n in nodes] == ["master-1", "master-2", "core-1", "core-2", "core-3", "web-1", "web-2"]
    assert [n.module for n in nodes] == ["coreapp"] * 5 + ["webapp"] * 2
    assert [n.bus_identity for n in nodes] == ["coreapp"] * 5 + ["webapp"] * 2


def test_coreapps_are_shards_plus_standbys(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, masters=2, shards=4, standbys=2, webapps=3)
    assert cluster.names(Role.MASTER) == ["master-1", "master-2"]
    assert cluster.names(Role.COREAPP) == [f"core-{i}" for i in range(1, 7)]
    assert cluster.names(Role.WEBAPP) == ["web-1", "web-2", "web-3"]
    assert cluster.node_names == [*cluster.names(Role.MASTER), *cluster.names(Role.COREAPP), "web-1", "web-2", "web-3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shards": 3}, "shards must be one of"),
        ({"masters": 0}, "at least 1 master"),
        ({"webapps": 0}, "at least 1 master and 1 webapp"),
        ({"standbys": -1}, "no negative standbys"),
    ],
)
def test_bad_shapes_are_refused(tmp_path: Path, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _cluster(tmp_path, **kwargs)


def test_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="MariaDB/MySQL or PostgreSQL"):
        Cluster(tmp_path, DbSettings(engine=DbEngine.SQLITE))


def test_node_environments(tmp_path: Path) -> None:
    """Every app node: multiconnect, its own WA_NODE_ID, WA_MASTER_NODE on masters only, its broker identity, the
    one database, the shared media; and each loads as the settings the interface promises."""
    cluster = _cluster(tmp_path, masters=2, shards=2, standbys=1, webapps=2, lease_ttl_s=4.0, renew_every_s=1.0)
    envs = {node.name: cluster.app_env(node) for node in cluster.nodes}
    assert len({env["WA_NODE_ID"] for env in envs.values()}) == len(envs) == 7
    for node in cluster.nodes:
        env = envs[node.name]
        assert env["WA_APP_MULTICONNECT"] == "1" and env["WA_NODE_ID"] == node.name
        assert ("WA_MASTER_NODE" in env) is (node.role is Role.MASTER)
        assert env["WA_MQTT_USERNAME"] == node.bus_identity
        assert env["WA_MQTT_PASSWORD"] == cluster.mqtt_users[node.bus_identity]
        assert env["WA_MQTT_PORT"] == str(cluster.ports["mqtt"]) and env["WA_BUS"] == "MQTT"
        assert env["WA_MEDIA_DIR"] == str(cluster.workdir / "media")
        assert env["WA_CHAT_CA_FILE"] == str(cluster.workdir / "chatd" / "ca.pem")
        assert {k: env[k] for k in db_env(MYSQL)} == db_env(MYSQL)
        assert not any(k.startswith("WA_SANDBOX_") for k in env)
        settings = load_settings(env=env, env_file=None)
        assert settings.ha.multiconnect and settings.ha.node_id == node.name
        assert settings.ha.master is (node.role is Role.MASTER)
        assert (settings.ha.lease_ttl_s, settings.ha.renew_every_s, settings.ha.margin_s) == (4.0, 1.0, 1.5)
        assert settings.db.database == "mc_openprem"
    # One key-store key for every master and coreapp, one JWT key and certificate for every webapp.
    assert {envs[n]["WA_DATA_DIR"] for n in cluster.names(Role.WEBAPP)} == {str(cluster.workdir / "data/webapp")}
    core = [*cluster.names(Role.MASTER), *cluster.names(Role.COREAPP)]
    assert {envs[n]["WA_DATA_DIR"] for n in core} == {str(cluster.workdir / "data/coreapp")}
    assert len({env["WA_LOG_DIR"] for env in envs.values()}) == 7, "log files are per process"
    # Webapps: own ports, the cluster's API key; the others listen on nothing.
    web_ports = [envs[n]["WA_WEB_PORT"] for n in cluster.names(Role.WEBAPP)]
    assert web_ports == [str(cluster.ports[n]) for n in cluster.names(Role.WEBAPP)]
    assert all("WA_WEB_PORT" not in envs[n] for n in core)
    assert {envs[n]["WA_WEB_API_KEY"] for n in cluster.names(Role.WEBAPP)} == {cluster.api_key}
    assert cluster.web_urls == [f"https://127.0.0.1:{p}" for p in web_ports]


def test_ports_distinct_and_below_the_ephemeral_range(tmp_path: Path) -> None:
    a, b = _cluster(tmp_path, webapps=3), _cluster(tmp_path, webapps=3)
    every = [*a.ports.values(), *b.ports.values()]
    assert len(set(every)) == len(every) == 16
    low = ports.ephemeral_low()
    if low - 1 > ports.LOWEST:
        assert all(ports.LOWEST <= p < low for p in every)
    chatd = a.chatd_env()
    assert chatd["WA_SANDBOX_ADMIN_PORT"] == str(a.ports["chatd-admin"])
    assert a.admin_url == f"http://127.0.0.1:{a.ports['chatd-admin']}"
    core = a.app_env(a.nodes[0])
    assert core["WA_CHAT_PORT"] == chatd["WA_SANDBOX_PORT"]
    assert core["WA_CHAT_FALLBACK_PORT"] == chatd["WA_SANDBOX_FALLBACK_PORT"]
    assert core["WA_CHAT_MEDIA_PORT"] == chatd["WA_SANDBOX_MEDIA_PORT"]


def test_preferred_ports_when_free_else_free_ones(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        free = ports.free_port()
        ports._given.discard(free)  # as if nothing had handed it out
        cluster = _cluster(tmp_path, preferred_ports={"web-1": free, "web-2": busy})
        assert cluster.ports["web-1"] == free
        assert cluster.ports["web-2"] != busy


def test_environment_overrides_and_the_parents_wa_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WA_WEB_PORT", "1")  # the launcher's own environment never leaks into a node
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    cluster = _cluster(
        tmp_path,
        extra_env={"WA_SANDBOX_RECEIPT_DELAY": "0.05", "WA_CHAT_PING_INTERVAL": "5"},
        node_env={"core-1": {"WA_LOG_LEVEL": "DEBUG"}, "chatd": {"WA_SANDBOX_READ_DELAY": "0.1"}},
        demo_phones=True,
    )
    by_name = {n.name: n for n in cluster.nodes}
    core1, core2 = cluster.app_env(by_name["core-1"]), cluster.app_env(by_name["core-2"])
    assert core1["WA_LOG_LEVEL"] == "DEBUG" and core2["WA_LOG_LEVEL"] == "INFO"
    assert core1["WA_CHAT_PING_INTERVAL"] == "5" and "WA_SANDBOX_RECEIPT_DELAY" not in core1
    assert cluster.app_env(by_name["web-1"])["WA_WEB_PORT"] == str(cluster.ports["web-1"])
    chatd = cluster.chatd_env()
    assert chatd["WA_SANDBOX_RECEIPT_DELAY"] == "0.05" and chatd["WA_SANDBOX_READ_DELAY"] == "0.1"
    assert chatd["WA_SANDBOX_DEMO"] == "1" and "WA_CHAT_PING_INTERVAL" not in chatd
    # The nodes run this source tree, whatever the parent's PYTHONPATH.
    root = str(Path(__file__).resolve().parents[2])
    assert core1["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere"]


def test_the_broker_files(tmp_path: Path) -> None:
    config = mosquitto_config(21883, tmp_path, tmp_path / "auth" / "passwd", ACL_FILE)
    lines = config.splitlines()
    assert "listener 21883 127.0.0.1" in lines and "allow_anonymous false" in lines
    assert f"acl_file {ACL_FILE}" in lines and f"password_file {tmp_path / 'auth' / 'passwd'}" in lines
    assert "set_tcp_nodelay true" in lines and "persistence true" in lines
    if mosquitto_passwd_binary() is None:
        pytest.skip("mosquitto_passwd is not installed")
    path = tmp_path / "auth" / "passwd"
    write_password_file(path, {"webapp": "pw-one", "coreapp": "pw-two"})
    text = path.read_text()
    assert [line.split(":")[0] for line in text.splitlines()] == ["webapp", "coreapp"]
    assert "pw-one" not in text and "pw-two" not in text, "hashed, not the passwords"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_cluster_acl_is_the_shipped_one() -> None:
    assert Path(__file__).resolve().parents[2] / "conf" / "mosquitto.acl" == ACL_FILE
    assert ACL_FILE.is_file()


async def test_node_process_signals(tmp_path: Path) -> None:
    """kill = SIGKILL, pause/resume = SIGSTOP/SIGCONT of the process group, terminate = SIGTERM (also paused)."""
    script = "import signal, sys, time\nprint('up', flush=True)\ntime.sleep(60)\n"
    proc = NodeProcess("sleeper", [sys.executable, "-c", script], dict(os.environ), tmp_path / "s.log", tmp_path)
    proc.start()
    with pytest.raises(RuntimeError, match="already running"):
        proc.start()
    proc.pause()
    await asyncio.sleep(0.1)
    assert proc.paused and _state(proc.pid) == "T"
    proc.resume()
    await asyncio.sleep(0.1)
    assert not proc.paused and _state(proc.pid) != "T"
    proc.kill()
    assert proc.returncode == -signal.SIGKILL and not proc.alive()
    proc.start()  # restartable, appending to the same log
    proc.pause()
    assert await proc.terminate(5.0) == -signal.SIGTERM
    assert proc.log_path.read_text().count("===== start") == 2


def _state(pid: int | None) -> str:
    assert pid is not None
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


# --- python -m openprem run --multiconnect -------------------------------------------------------------------------


def test_parser_multiconnect() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["run", "--multiconnect", "--shards", "2", "--standbys", "1"])
    options = cli.multiconnect_options(parser, args)
    assert options == MulticonnectOptions(shards=2, standbys=1)
    assert (options.backend, options.masters, options.webapps) == ("mariadb", 2, 2)
    args = parser.parse_args(
        ["run", "--multiconnect", "--shards", "4", "--standbys", "0", "--backend", "postgres", "--masters", "1",
         "--webapps", "3", "--workdir", "/tmp/mc", "--db-prefix", "x_", "--no-quickstart"]
    )  # fmt: skip
    assert cli.multiconnect_options(parser, args) == MulticonnectOptions(
        backend="postgres", masters=1, shards=4, standbys=0, webapps=3, workdir=Path("/tmp/mc"), db_prefix="x_",
        quickstart=False,
    )  # fmt: skip
    for count in SHARD_COUNTS:
        assert parser.parse_args(["run", "--multiconnect", "--shards", str(count)]).shards == count


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--shards", "2"],  # multiconnect options without --multiconnect
        ["run", "--backend", "postgres"],
        ["run", "--multiconnect", "--shards", "3"],
        ["run", "--multiconnect", "--masters", "0"],
        ["run", "--multiconnect", "--standbys", "-1"],
        ["run", "--multiconnect", "--backend", "sqlite"],
        ["run", "--multiconnect", "--no-sandbox"],
        ["run", "--multiconnect", "--env-file", "x.conf"],
    ],
)
def test_parser_refuses(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_plain_run_stays_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def fake_run(options: object, env_file: object) -> int:
        calls.append(options)
        return 0

    monkeypatch.setattr("openprem.embedded.run", fake_run)
    monkeypatch.setattr("openprem.multiconnect_run.run", lambda options: pytest.fail("not multiconnect"))
    assert cli.main(["run", "--no-quickstart"]) == 0
    assert len(calls) == 1


def test_multiconnect_run_is_dispatched(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[MulticonnectOptions] = []

    def fake_run(options: MulticonnectOptions) -> int:
        got.append(options)
        return 0

    monkeypatch.setattr("openprem.multiconnect_run.run", fake_run)
    assert cli.main(["run", "--multiconnect", "--shards", "2", "--standbys", "1"]) == 0
    assert got == [MulticonnectOptions()]


def test_db_settings_from_the_environment_or_the_machine() -> None:
    maria = db_settings("mariadb", "openprem_mc_", env={})
    assert (maria.engine, maria.hostname, maria.effective_port, maria.username, maria.password) == (
        DbEngine.MYSQL, "127.0.0.1", 3306, "root", ""
    )  # fmt: skip
    assert maria.database == "openprem_mc_openprem"
    pg = db_settings("postgres", "openprem_mc_", env={})
    assert (pg.engine, pg.effective_port, pg.username) == (DbEngine.PGSQL, 5432, "postgres")
    env = {"WA_DB_HOSTNAME": "db.local", "WA_DB_PORT": "3307", "WA_DB_USERNAME": "op", "WA_DB_PASSWORD": "s3cr3t-x"}
    other = db_settings("mariadb", "p_", env=env)
    assert (other.hostname, other.effective_port, other.username) == ("db.local", 3307, "op")
    assert other.password == "s3cr3t-x"


def test_cli_cluster_and_banner(tmp_path: Path) -> None:
    options = MulticonnectOptions(workdir=tmp_path / "mc")
    cluster = build_cluster(options, env={})
    assert cluster.demo_phones and cluster.workdir == (tmp_path / "mc").resolve()
    assert len(cluster.names(Role.COREAPP)) == 3 and len(cluster.names(Role.WEBAPP)) == 2
    assert preferred_ports(3) == {
        "web-1": 9090, "chatd-admin": 9091, "chatd-media": 9092, "chat": 5222, "chat-fallback": 8443,
        "web-2": 9093, "web-3": 9094,
    }  # fmt: skip
    text = banner(cluster, options)
    assert "2 masters, 3 coreapps (2 shards + 1 standby), 2 webapps" in text
    for url in cluster.web_urls:
        assert f"{url}/v1" in text
    assert "openprem_mc_openprem" in text and "QUICK START" in text
    for name in cluster.node_names:
        assert f"{name} (None)" in text  # not started: no pid yet
    assert "QUICK START" not in banner(cluster, options, quickstart=False)


def test_quickstart_against_the_cluster(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    text = quickstart_commands(cluster)
    web1 = cluster.web_urls[0].replace("127.0.0.1", "localhost")
    assert f"API={web1}/v1" in text
    if cluster.ports["chatd-admin"] != 9091:
        assert f"-m chatd --admin-url {cluster.admin_url} code" in text
        assert text.replace(f" --admin-url {cluster.admin_url}", "") == commands(f"{web1}/v1")


def test_one_shot_node_env_has_no_web_port(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    env = cluster.app_env(Node("migrate-webapp", Role.WEBAPP))
    assert env["WA_NODE_ID"] == "migrate-webapp" and "WA_WEB_PORT" not in env
