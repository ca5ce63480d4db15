"""The compose files, Dockerfiles and conf/whatsapp.conf agree with each other and with the package.

No docker engine is needed: the files are parsed and cross-checked.
"""

from __future__ import annotations

import importlib.util
import json
import re
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
        assert services["postgres"]["image"].startswith("postgres:13")


def test_sandbox_has_the_demo_phones(compose: tuple[str, dict[str, Any]]) -> None:
    assert compose[1]["services"]["chatd"]["environment"]["WA_SANDBOX_DEMO"] == "1"


def test_ports(compose: tuple[str, dict[str, Any]]) -> None:
    services = compose[1]["services"]
    assert services["webapp"]["ports"] == ["9090:443"]
    # chatd's admin API has no authentication: the host's loopback only.
    assert all(str(p).startswith("127.0.0.1:") for p in services["chatd"].get("ports", []))
    for name in ("coreapp", compose[0], "mosquitto"):
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
    conf = read_env_file(CONF)
    for app in ("coreapp", "webapp"):
        env = {**conf, **{k: str(v) for k, v in services[app]["environment"].items()}}
        settings = load_settings(env=env)
        assert settings.db.engine is DbEngine.PGSQL
        assert (settings.db.hostname, settings.db.effective_port) == ("postgres", 5432)
