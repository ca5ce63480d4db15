"""The compose files, Dockerfiles and conf/whatsapp.conf agree with each other and with the package.

No docker engine is needed: the files are parsed and cross-checked.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.config import ENV_VARS, DbEngine, load_settings, read_env_file

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILES = {"mysql": COMPOSE_DIR / "compose.yaml", "postgres": COMPOSE_DIR / "compose.postgres.yaml"}
APPS = ("chatd", "coreapp", "webapp")
CONF = ROOT / "conf" / "whatsapp.conf"
ENV_EXAMPLE = COMPOSE_DIR / "env.example"
DB_SERVICE = {"mysql": "mysql", "postgres": "postgres"}
MONITORING_SECRETS = frozenset({"WA_WEB_API_KEY", "WA_GRAFANA_ADMIN_PASSWORD"})
"""The variables of env.example that only compose/monitoring/compose.monitoring.yaml reads (test_compose_monitoring)."""


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(params=sorted(COMPOSE_FILES))
def compose(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, _load(COMPOSE_FILES[request.param])


def _env_files(service: dict[str, Any]) -> list[str]:
    env_file = service.get("env_file", [])
    return [env_file] if isinstance(env_file, str) else list(env_file)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (named volume or host path)."""
    mounts = {}
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        mounts[parts[1]] = parts[0]
    return mounts


_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:\?|:-)?(?P<arg>[^}]*)\}")


def _interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$`` (what compose/.env feeds)."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        got = env.get(name, "")
        if op == ":?" and not got:
            raise LookupError(f"required variable {name} is missing a value: {arg}")
        return arg if op == ":-" and not got else got

    return _VAR.sub(sub, value)


def _secrets() -> dict[str, str]:
    """A filled-in compose/.env: every variable of env.example with a value of its own."""
    return {name: f"secret-of-{name.lower()}" for name in read_env_file(ENV_EXAMPLE)}


def _environment(service: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment: as a mapping"
    return {k: _interpolate(str(v), secrets) for k, v in env.items()}


def _app_env(service: dict[str, Any], secrets: Mapping[str, str]) -> dict[str, str]:
    """What the process sees: the env file, then the service's ``environment:`` (which wins)."""
    return {**read_env_file(CONF), **_environment(service, secrets)}


def _required_vars(value: str) -> set[str]:
    return {m.group("name") for m in _VAR.finditer(value) if m.group("op") == ":?"}


def _dockerfile_cmd(app: str) -> list[str]:
    text = (ROOT / "docker" / f"{app}.Dockerfile").read_text(encoding="utf-8")
    cmds = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert len(cmds) == 1, f"{app}.Dockerfile needs exactly one exec-form CMD"
    result = json.loads(cmds[0])
    assert isinstance(result, list)
    return result


def test_services(compose: tuple[str, dict[str, Any]]) -> None:
    db, data = compose
    services = data["services"]
    assert set(services) == {db, "mosquitto", *APPS}
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    if db == "mysql":
        assert services["mysql"]["image"].startswith("mysql:8.0")
        assert "--default-authentication-plugin=mysql_native_password" in services["mysql"]["command"]
    else:
        major = int(services["postgres"]["image"].removeprefix("postgres:").split(".")[0].split("-")[0])
        assert major in (16, 17), "a supported PostgreSQL major version"


def test_sandbox_has_the_demo_phones(compose: tuple[str, dict[str, Any]]) -> None:
    assert compose[1]["services"]["chatd"]["environment"]["WA_SANDBOX_DEMO"] == "1"


def test_ports(compose: tuple[str, dict[str, Any]]) -> None:
    services = compose[1]["services"]
    assert services["webapp"]["ports"] == ["9090:443"]
    # chatd's admin API has no authentication: it is not published at all (test_chatd_admin_api_stays_in_chatd).
    for name in ("coreapp", compose[0], "mosquitto", "chatd"):
        assert "ports" not in services[name], f"{name} should not publish ports"


def test_healthchecks_everywhere(compose: tuple[str, dict[str, Any]]) -> None:
    for name, service in compose[1]["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_depends_on_healthy(compose: tuple[str, dict[str, Any]]) -> None:
    db, data = compose
    services = data["services"]

    def healthy_deps(name: str) -> set[str]:
        deps = services[name].get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use conditions"
        assert all(d.get("condition") == "service_healthy" for d in deps.values()), name
        return set(deps)

    assert healthy_deps("coreapp") >= {db, "mosquitto", "chatd"}
    assert "coreapp" in healthy_deps("webapp")


def test_volumes(compose: tuple[str, dict[str, Any]]) -> None:
    data = compose[1]
    services = data["services"]
    web, core, chatd = (_mounts(services[n]) for n in ("webapp", "coreapp", "chatd"))
    assert web["/usr/local/wamedia"] == core["/usr/local/wamedia"] == "whatsappMedia"
    conf = read_env_file(CONF)
    # coreapp reads chatd's CA from chatd's data volume.
    ca = Path(conf["WA_CHAT_CA_FILE"])
    sandbox_dir = conf["WA_SANDBOX_DATA_DIR"]
    assert str(ca.parent) == sandbox_dir
    assert chatd[sandbox_dir] == core[sandbox_dir]
    assert conf["WA_DATA_DIR"] in core and conf["WA_DATA_DIR"] in web
    assert conf["WA_MEDIA_DIR"] == "/usr/local/wamedia"
    declared = set(data.get("volumes", {}))
    for service in services.values():
        for source in _mounts(service).values():
            if not source.startswith((".", "/")):
                assert source in declared, f"volume {source} not declared"


def test_env_files_exist(compose: tuple[str, dict[str, Any]]) -> None:
    services = compose[1]["services"]
    for name in APPS:
        files = _env_files(services[name])
        assert files == ["../conf/whatsapp.conf"], name
        for env_file in files:
            assert (COMPOSE_DIR / env_file).resolve() == CONF.resolve()
            assert (COMPOSE_DIR / env_file).is_file()


def test_bind_mounted_files_exist(compose: tuple[str, dict[str, Any]]) -> None:
    """E.g. conf/mosquitto.conf (written with the MQTT bus)."""
    for name, service in compose[1]["services"].items():
        for source in _mounts(service).values():
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"


@pytest.mark.parametrize("app", APPS)
def test_command_module_and_dockerfile_cmd(app: str) -> None:
    cmd = _dockerfile_cmd(app)
    assert cmd == ["python", "-m", app]
    for path in COMPOSE_FILES.values():
        service = _load(path)["services"][app]
        assert service["command"] == cmd, f"{path.name}: {app} command differs from its Dockerfile CMD"
        assert service["build"]["dockerfile"] == f"docker/{app}.Dockerfile"
        assert (COMPOSE_DIR / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert importlib.util.find_spec(f"{app}.__main__") is not None, f"python -m {app} has no {app}/__main__.py yet"


@pytest.mark.parametrize("app", APPS)
def test_dockerfile_basics(app: str) -> None:
    text = (ROOT / "docker" / f"{app}.Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)  # glibc: xeddsa has no musl wheels
    assert re.search(r"^USER (?!root)\S+", text, re.M)
    assert re.search(rf'^\s*CMD \["python", "-m", "openprem", "healthcheck", "{app}"\]', text, re.M)
    assert "HEALTHCHECK" in text
    for source in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / source).exists(), f"{app}.Dockerfile copies missing {source}"
    assert importlib.util.find_spec("openprem.healthcheck") is not None


def test_conf_lists_every_variable() -> None:
    text = CONF.read_text(encoding="utf-8")
    values = read_env_file(CONF)
    assert set(values) == set(ENV_VARS), "conf/whatsapp.conf must list exactly the variables of shared/config.py"
    lines = text.splitlines()
    for name in ENV_VARS:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
        assert lines[index - 1].startswith("# ") and "default:" in lines[index - 1], f"{name} needs a comment"


def test_conf_is_the_compose_deployment() -> None:
    settings = load_settings(env={}, env_file=CONF)
    assert settings.db.engine is DbEngine.MYSQL and settings.db.hostname == "mysql"
    assert settings.bus.mqtt_host == "mosquitto"
    assert settings.chat.host == "chatd"
    assert (settings.chat.port, settings.chat.fallback_port) == (5222, 443)
    assert (settings.sandbox.port, settings.sandbox.fallback_port) == (5222, 443)
    assert settings.web.port == 443
    assert settings.embedded is False


def test_postgres_overrides() -> None:
    services = _load(COMPOSE_FILES["postgres"])["services"]
    for app in ("coreapp", "webapp"):
        settings = load_settings(env=_app_env(services[app], _secrets()))
        assert settings.db.engine is DbEngine.PGSQL
        assert (settings.db.hostname, settings.db.effective_port) == ("postgres", 5432)


# -- issue 12: an authenticated bus, least-privilege database users, hardened containers -------------------------


def test_every_container_is_hardened(compose: tuple[str, dict[str, Any]]) -> None:
    for name, service in compose[1]["services"].items():
        assert "no-new-privileges:true" in service.get("security_opt", []), f"{name}: no-new-privileges"
        assert service.get("read_only") is True, f"{name}: read-only root filesystem"
        assert "/tmp" in service.get("tmpfs", []), f"{name}: /tmp must be a tmpfs on a read-only root"
        assert "privileged" not in service and "MKNOD" in service.get("cap_drop", []), name
    # What each writes besides its volumes is a tmpfs: the database's socket directory, the broker's password file.
    services = compose[1]["services"]
    db_tmpfs = "/var/run/mysqld" if compose[0] == "mysql" else "/var/run/postgresql"
    assert db_tmpfs in services[DB_SERVICE[compose[0]]]["tmpfs"]
    assert "/mosquitto/auth" in services["mosquitto"]["tmpfs"]
    # Every OpenPrem process's log directory is a volume (WA_LOG_TO_FILE=true writes there).
    log_dir = read_env_file(CONF)["WA_LOG_DIR"]
    for app in APPS:
        assert log_dir in _mounts(services[app]), f"{app}: {log_dir} must be a volume"


def test_secrets_come_only_from_compose_env(compose: tuple[str, dict[str, Any]]) -> None:
    """No password in the compose file, conf/whatsapp.conf or env.example: each is a required ``${NAME:?…}`` of
    compose/.env, so an unfilled install does not start (and none shares a working default)."""
    path = COMPOSE_FILES[compose[0]]
    raw = path.read_text(encoding="utf-8")
    names = set(_secrets()) - MONITORING_SECRETS
    assert names == {"WA_DB_ROOT_PASSWORD", "WA_DB_PASSWORD", "WA_MQTT_WEBAPP_PASSWORD", "WA_MQTT_COREAPP_PASSWORD"}
    assert all(value == "" for value in read_env_file(ENV_EXAMPLE).values()), "env.example must stay empty"
    assert all(m.group("op") == ":?" for m in _VAR.finditer(raw) if m.group(0) != "$$"), "every ${…} is required"
    assert _required_vars(raw) == names
    for name, service in compose[1]["services"].items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert _required_vars(str(value)), f"{name}: {key} must come from compose/.env"
                with pytest.raises(LookupError, match=r"compose/\.env"):
                    _interpolate(str(value), {})
    conf = read_env_file(CONF)
    assert conf["WA_DB_PASSWORD"] == "" and conf["WA_MQTT_PASSWORD"] == ""
    assert "compose/.env" in (ROOT / ".gitignore").read_text().split()


def test_apps_use_their_own_database_user(compose: tuple[str, dict[str, Any]]) -> None:
    db, data = compose
    services = data["services"]
    secrets = _secrets()
    for app in ("coreapp", "webapp"):
        settings = load_settings(env=_app_env(services[app], secrets))
        assert settings.db.username == "openprem", f"{app} must not connect as root"
        assert settings.db.password == secrets["WA_DB_PASSWORD"]
        assert settings.db.database == "openprem"
    server = services[DB_SERVICE[db]]
    env = _environment(server, secrets)
    assert "env_file" not in server, "the database container needs its own variables only"
    init = {target: source for target, source in _mounts(server).items() if "docker-entrypoint-initdb.d" in target}
    assert len(init) == 1, "one init file, mounted read-only"
    ((target, source),) = init.items()
    script = (COMPOSE_DIR / source).read_text(encoding="utf-8")
    if db == "mysql":
        # The image creates MYSQL_USER; docker/mysql-init.sql creates the database and grants that user it only.
        assert env["MYSQL_USER"] == "openprem" and env["MYSQL_PASSWORD"] == secrets["WA_DB_PASSWORD"]
        assert env["MYSQL_ROOT_PASSWORD"] == secrets["WA_DB_ROOT_PASSWORD"]
        assert env["MYSQL_ROOT_HOST"] == "localhost", "root from inside the database container only"
        assert "MYSQL_DATABASE" not in env and target.endswith(".sql")
        grants = re.findall(r"^GRANT (.+) ON (\S+) TO (\S+);$", script, re.M)
        assert grants == [("ALL PRIVILEGES", "`openprem`.*", "'openprem'@'%'")]
        assert "CREATE DATABASE IF NOT EXISTS `openprem` CHARACTER SET utf8mb4" in script
    else:
        assert env["POSTGRES_PASSWORD"] == secrets["WA_DB_ROOT_PASSWORD"]
        assert env["WA_DB_PASSWORD"] == secrets["WA_DB_PASSWORD"] and "POSTGRES_USER" not in env
        assert target.endswith(".sh") and 'OPENPREM_DB_USER="${OPENPREM_DB_USER:-openprem}"' in script
        assert 'OPENPREM_DB_NAME="${OPENPREM_DB_NAME:-openprem}"' in script
        assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in script and 'OWNER :"app_user"' in script
        assert (ROOT / "docker" / "postgres-init.sh").stat().st_mode & 0o111, "executable (else the image sources it)"
    assert env["MYSQL_ROOT_PASSWORD" if db == "mysql" else "POSTGRES_PASSWORD"] != secrets["WA_DB_PASSWORD"]


def _mosquitto_conf() -> dict[str, str]:
    lines = (ROOT / "conf" / "mosquitto.conf").read_text(encoding="utf-8").splitlines()
    return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))


def _acl() -> dict[str | None, list[str]]:
    """conf/mosquitto.acl: user (None: rules before any `user` line, which apply to anonymous clients) -> rules."""
    rules: dict[str | None, list[str]] = {None: []}
    user: str | None = None
    for line in (ROOT / "conf" / "mosquitto.acl").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            user = line.removeprefix("user ")
            rules.setdefault(user, [])
        else:
            rules.setdefault(user, []).append(line)
    return rules


def test_the_broker_refuses_anonymous_clients_and_has_per_role_rights() -> None:
    conf = _mosquitto_conf()
    assert conf["allow_anonymous"] == "false"
    assert conf["password_file"] == "/mosquitto/auth/passwd"
    assert conf["acl_file"] == "/mosquitto/auth/mosquitto.acl"
    assert "per_listener_settings" not in conf or conf["per_listener_settings"] == "false"
    acl = _acl()
    assert acl[None] == [], "no rules for anonymous clients"
    assert not any(rule.startswith("pattern") for rules in acl.values() for rule in rules), "patterns apply to all"
    assert acl == {
        None: [],
        "webapp": [
            "topic write openprem/+/rpc/req",
            "topic write openprem/+/rpc/master/req",
            "topic write openprem/+/rpc/shard/+/req",
            "topic write openprem/+/rpc/node/+/req",
            "topic read openprem/+/rpc/resp/+",
            "topic write openprem/+/node/+",
            "topic read openprem/+/node/+",
        ],
        "coreapp": [
            "topic read openprem/+/rpc/req",
            "topic read openprem/+/rpc/master/req",
            "topic read openprem/+/rpc/shard/+/req",
            "topic read openprem/+/rpc/node/+/req",
            "topic write openprem/+/rpc/resp/+",
            "topic read openprem/+/rpc/resp/coreapp",
            "topic write openprem/+/node/+",
        ],
        "healthcheck": ["topic read $SYS/broker/uptime"],
    }


def test_the_broker_writes_its_password_file_from_compose_env(compose: tuple[str, dict[str, Any]]) -> None:
    mosquitto = compose[1]["services"]["mosquitto"]
    mounts = _mounts(mosquitto)
    entrypoint = mosquitto["entrypoint"]
    assert entrypoint[0] == "/bin/sh" and mounts[entrypoint[1]] == "../docker/mosquitto-entrypoint.sh"
    assert mounts["/mosquitto/config/mosquitto.conf"] == "../conf/mosquitto.conf"
    assert mounts["/mosquitto/config/mosquitto.acl"] == "../conf/mosquitto.acl"
    assert all(entry.endswith(":ro") for entry in mosquitto["volumes"] if entry.startswith(".."))
    assert mosquitto["command"] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    secrets = _secrets()
    env = _environment(mosquitto, secrets)
    assert env == {n: secrets[n] for n in ("WA_MQTT_WEBAPP_PASSWORD", "WA_MQTT_COREAPP_PASSWORD")}
    script = (ROOT / "docker" / "mosquitto-entrypoint.sh").read_text(encoding="utf-8")
    assert 'auth_dir="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"' in script
    assert '"$auth_dir/passwd"' in script and '"$auth_dir/mosquitto.acl"' in script
    assert "mosquitto_passwd -b" not in script, "passwords on stdin, never in argv"
    check = " ".join(mosquitto["healthcheck"]["test"])
    assert "XDG_CONFIG_HOME=/mosquitto/auth" in check and "mosquitto_sub" in check


def test_each_app_connects_to_the_bus_as_itself(compose: tuple[str, dict[str, Any]]) -> None:
    services = compose[1]["services"]
    secrets = _secrets()
    for app, var in (("webapp", "WA_MQTT_WEBAPP_PASSWORD"), ("coreapp", "WA_MQTT_COREAPP_PASSWORD")):
        bus = load_settings(env=_app_env(services[app], secrets)).bus
        assert (bus.mqtt_username, bus.mqtt_password) == (app, secrets[var])
        assert app in _acl()
    chatd = _app_env(services["chatd"], secrets)
    assert not any(chatd.get(name) for name in ("WA_MQTT_USERNAME", "WA_MQTT_PASSWORD")), "chatd needs no bus identity"


def test_chatd_admin_api_stays_in_chatd(compose: tuple[str, dict[str, Any]]) -> None:
    """The admin API has no authentication: bound to chatd's own loopback and not published, so neither other
    containers nor the host reach it; the operator uses `docker compose exec chatd python -m chatd …`."""
    chatd = compose[1]["services"]["chatd"]
    assert "ports" not in chatd and "expose" not in chatd
    settings = load_settings(env=_app_env(chatd, _secrets()))
    assert settings.sandbox.admin_host in ("127.0.0.1", "localhost", "::1")
    text = (ROOT / "docker" / "chatd.Dockerfile").read_text(encoding="utf-8")
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, re.M) for p in line.split()}
    assert settings.sandbox.admin_port not in exposed
    assert "exec chatd python -m chatd" in COMPOSE_FILES[compose[0]].read_text(encoding="utf-8")


# -- issue 11: the multiconnect deployment (compose/compose.multiconnect.yaml) -----------------------------------

MULTICONNECT = COMPOSE_DIR / "compose.multiconnect.yaml"
ONE_SHOTS = ("coreapp-migrate", "webapp-migrate", "shards")
MASTERS = ("master-1", "master-2")
COREAPPS = ("core-1", "core-2", "core-3")
WEBAPPS = ("web-1", "web-2")
CORE_NODES = (*MASTERS, *COREAPPS)
NODES = (*CORE_NODES, *WEBAPPS)


@pytest.fixture(scope="module")
def multi() -> dict[str, Any]:
    services = _load(MULTICONNECT)["services"]
    assert isinstance(services, dict)
    return services


def _shard_count(services: dict[str, Any]) -> int:
    command = services["shards"]["command"]
    assert command[:4] == ["python", "-m", "coreapp", "shards"] and len(command) == 5
    return int(command[4])


def test_multiconnect_services(multi: dict[str, Any]) -> None:
    from openprem.multiconnect import SHARD_COUNTS, Role, plan_nodes

    assert set(multi) == {"mysql", "mosquitto", "chatd", *ONE_SHOTS, *NODES}
    shards = _shard_count(multi)
    assert shards == 2 and shards in SHARD_COUNTS
    assert len(COREAPPS) == shards + 1, "shards + 1 coreapps: one may fail"
    # The same names as the local Cluster (python -m openprem run --multiconnect), in the same roles.
    plan = plan_nodes(len(MASTERS), len(COREAPPS), len(WEBAPPS))
    assert [n.name for n in plan] == list(NODES)
    assert {n.name for n in plan if n.role is Role.MASTER} == set(MASTERS)


def test_multiconnect_shares_the_infrastructure_of_compose_yaml(multi: dict[str, Any]) -> None:
    """The database, the broker and chatd are exactly those of compose.yaml (same images, secrets, volumes, checks)."""
    base = _load(COMPOSE_FILES["mysql"])["services"]
    for name in ("mysql", "mosquitto", "chatd"):
        assert multi[name] == base[name], f"{name} differs from compose.yaml"


def test_multiconnect_nodes_are_the_images_and_commands_of_compose_yaml(multi: dict[str, Any]) -> None:
    base = _load(COMPOSE_FILES["mysql"])["services"]
    for name, service in multi.items():
        if name in ("mysql", "mosquitto", "chatd"):
            continue
        app = "webapp" if name in WEBAPPS or name == "webapp-migrate" else "coreapp"
        assert service["image"] == base[app]["image"] == f"openprem-{app}", name
        assert service["build"] == base[app]["build"], name
        assert _env_files(service) == ["../conf/whatsapp.conf"], name
        assert service["stop_grace_period"] == base[app]["stop_grace_period"]
        if name in NODES:
            assert service["command"] == _dockerfile_cmd(app) == base[app]["command"], name
            assert service["healthcheck"] == base[app]["healthcheck"], name
            assert service["restart"] == "unless-stopped"
        else:
            assert service["command"][:3] == ["python", "-m", app], name
            assert service["restart"] == "no" and service["healthcheck"] == {"disable": True}, name
    assert multi["coreapp-migrate"]["command"] == ["python", "-m", "coreapp", "migrate"]
    assert multi["webapp-migrate"]["command"] == ["python", "-m", "webapp", "migrate"]


def test_multiconnect_every_container_is_hardened(multi: dict[str, Any]) -> None:
    for name, service in multi.items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("read_only") is True and "/tmp" in service.get("tmpfs", []), name
        assert "privileged" not in service and "MKNOD" in service.get("cap_drop", []), name


def test_multiconnect_node_environments(multi: dict[str, Any]) -> None:
    """WA_APP_MULTICONNECT everywhere, WA_MASTER_NODE on masters only, a unique WA_NODE_ID (= host name), each app
    as its own broker identity of conf/mosquitto.acl, the database as `openprem`; every variable is a real one."""
    secrets = _secrets()
    seen: set[str] = set()
    for name in (*NODES, *ONE_SHOTS):
        service = multi[name]
        env = _environment(service, secrets)
        assert set(env) <= set(ENV_VARS), f"{name}: unknown variables {set(env) - set(ENV_VARS)}"
        settings = load_settings(env=_app_env(service, secrets))
        assert settings.ha.multiconnect is True, name
        assert settings.ha.master is (name in MASTERS), name
        assert settings.ha.node_id == name == service["hostname"], name
        assert name not in seen
        seen.add(name)
        identity = "webapp" if name in WEBAPPS or name == "webapp-migrate" else "coreapp"
        password = secrets["WA_MQTT_WEBAPP_PASSWORD" if identity == "webapp" else "WA_MQTT_COREAPP_PASSWORD"]
        assert (settings.bus.mqtt_username, settings.bus.mqtt_password) == (identity, password), name
        assert identity in _acl()
        assert (settings.db.username, settings.db.password) == ("openprem", secrets["WA_DB_PASSWORD"]), name
        assert settings.db.engine is DbEngine.MYSQL and settings.db.hostname == "mysql"


def test_multiconnect_start_order(multi: dict[str, Any]) -> None:
    def deps(name: str) -> dict[str, str]:
        found = multi[name].get("depends_on", {})
        assert isinstance(found, dict), f"{name}: depends_on must use conditions"
        return {dep: cond["condition"] for dep, cond in found.items()}

    healthy, done = "service_healthy", "service_completed_successfully"
    assert deps("coreapp-migrate") == deps("webapp-migrate") == {"mysql": healthy}
    assert deps("shards") == {"mysql": healthy, "coreapp-migrate": done}, "the shard map after the schema"
    for name in CORE_NODES:
        assert deps(name) == {"mysql": healthy, "mosquitto": healthy, "chatd": healthy, "shards": done}, name
    for name in WEBAPPS:
        # Not on any one coreapp: a webapp keeps serving while nodes fail over.
        assert deps(name) == {"mysql": healthy, "mosquitto": healthy, "webapp-migrate": done, "shards": done}, name


def test_multiconnect_volumes_and_ports(multi: dict[str, Any]) -> None:
    data = _load(MULTICONNECT)
    conf = read_env_file(CONF)
    mounts = {name: _mounts(service) for name, service in multi.items()}
    declared = set(data["volumes"])
    for name, found in mounts.items():
        for source in found.values():
            assert source.startswith((".", "/")) or source in declared, f"{name}: volume {source} not declared"
    sandbox_dir, log_dir = conf["WA_SANDBOX_DATA_DIR"], conf["WA_LOG_DIR"]
    for name in NODES:
        assert mounts[name][conf["WA_MEDIA_DIR"]] == "whatsappMedia", f"{name}: the one media volume"
        data_volume = "webappData" if name in WEBAPPS else "coreappData"
        assert mounts[name][conf["WA_DATA_DIR"]] == data_volume, f"{name}: one key-store key / one JWT key"
    for name in CORE_NODES:
        assert mounts[name][sandbox_dir] == mounts["chatd"][sandbox_dir] == "chatdData"
        assert f"chatdData:{sandbox_dir}:ro" in multi[name]["volumes"], name
    logs = [mounts[name][log_dir] for name in (*NODES, "chatd")]
    assert len(set(logs)) == len(logs), "one log volume per running process (rotation is per file name)"
    for name in ONE_SHOTS:
        assert log_dir in mounts[name], f"{name}: WA_LOG_TO_FILE needs a writable {log_dir}"
    assert multi["web-1"]["ports"] == ["9090:443"] and multi["web-2"]["ports"] == ["9093:443"]
    for name, service in multi.items():
        if name not in WEBAPPS:
            assert "ports" not in service and "expose" not in service, f"{name} should not publish ports"


def test_multiconnect_secrets_come_only_from_compose_env(multi: dict[str, Any]) -> None:
    raw = MULTICONNECT.read_text(encoding="utf-8")
    assert all(m.group("op") == ":?" for m in _VAR.finditer(raw) if m.group(0) != "$$"), "every ${…} is required"
    assert _required_vars(raw) == set(_secrets()) - MONITORING_SECRETS
    for service in multi.values():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                with pytest.raises(LookupError, match=r"compose/\.env"):
                    _interpolate(str(value), {})
    assert "exec chatd python -m chatd" in raw
