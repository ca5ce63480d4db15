"""openprem launcher: embedded settings, command line, quick start (kept equal to README.md), shutdown order."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

import openprem.embedded as embedded
from openprem.__main__ import build_parser, main
from openprem.embedded import (
    RunOptions,
    embedded_settings,
    explicit_overrides,
    migration_trees,
    run_settings,
    serve,
    with_chat_ca,
)
from openprem.healthcheck import problems
from openprem.quickstart import DEFAULT_API, banner, commands
from openprem.webhook_echo import make_app
from shared.config import BusKind, ConfigError, DbEngine, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


# ------------------------------------------------------------------------------------------ settings


def test_embedded_settings_force_the_embedded_defaults() -> None:
    s = embedded_settings(load_settings(env={}))
    assert s.embedded is True
    assert s.db.engine is DbEngine.SQLITE
    assert s.db.sqlite_path == Path("var/data/openprem.db")
    assert s.bus.kind is BusKind.LOCAL
    assert (s.web.host, s.web.port) == ("127.0.0.1", 9090)
    assert s.web.allow_http_loopback_webhooks is True
    assert s.fetch.allow_loopback is True  # the only mode in which webhooks and media links may reach loopback
    assert (s.sandbox.port, s.sandbox.fallback_port) == (5222, 8443)
    assert (s.sandbox.admin_host, s.sandbox.admin_port) == ("127.0.0.1", 9091)
    assert (s.chat.host, s.chat.port, s.chat.fallback_port) == ("127.0.0.1", 5222, 8443)
    assert (s.paths.data_dir, s.paths.media_dir, s.paths.log_dir) == (
        Path("var/data"),
        Path("var/media"),
        Path("var/log"),
    )
    assert s.sandbox.data_dir == Path("var/chatd")
    # Untouched fields keep their defaults.
    assert s.chat.server_name == "chat.openprem.local"
    assert s.log.level == "INFO"


def test_explicit_environment_wins_except_for_the_bus() -> None:
    env = {
        "WA_WEB_PORT": "9443",
        "WA_DB_ENGINE": "PGSQL",
        "WA_DB_HOSTNAME": "db.example",
        "WA_BUS": "MQTT",
        "WA_SANDBOX_FALLBACK_PORT": "9444",
        "WA_LOG_LEVEL": "debug",
    }
    base = load_settings(env=env)
    s = embedded_settings(base)
    assert s.web.port == 9443
    assert s.db.engine is DbEngine.PGSQL and s.db.hostname == "db.example"
    assert s.sandbox.fallback_port == 9444
    assert s.chat.fallback_port == 8443  # not set explicitly: forced
    assert s.bus.kind is BusKind.LOCAL  # one process, one LocalBus, always
    assert s.log.level == "DEBUG"
    assert explicit_overrides(base) == ["WA_DB_ENGINE", "WA_SANDBOX_FALLBACK_PORT", "WA_WEB_PORT"]


def test_no_sandbox_keeps_the_chat_settings() -> None:
    base = load_settings(env={"WA_CHAT_HOSTNAME": "chat.example", "WA_CHAT_PORT": "15222"})
    s = embedded_settings(base, sandbox=False)
    assert (s.chat.host, s.chat.port, s.chat.fallback_port) == ("chat.example", 15222, 443)
    assert s.db.engine is DbEngine.SQLITE and s.web.port == 9090
    forced = embedded_settings(base, sandbox=True)
    assert (forced.chat.host, forced.chat.port) == ("chat.example", 15222)  # explicit still wins
    assert forced.chat.fallback_port == 8443


def test_with_chat_ca() -> None:
    s = with_chat_ca(embedded_settings(load_settings(env={})), Path("var/chatd/ca.pem"))
    assert s.chat.ca_file == Path("var/chatd/ca.pem")
    assert s.chat.port == 5222


def test_make_run_ignores_the_compose_conf(monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/whatsapp.conf holds the compose values (MYSQL on host ``mysql``...): ``openprem run`` never reads it."""
    assert (ROOT / "conf" / "whatsapp.conf").exists()
    monkeypatch.chdir(ROOT)
    if (ROOT / "conf" / "embedded.conf").exists():
        pytest.skip("a local conf/embedded.conf is present")
    s, overrides = run_settings(env={})
    assert s.db.engine is DbEngine.SQLITE
    assert s.bus.kind is BusKind.LOCAL
    assert s.paths.data_dir == Path("var/data")
    assert s.chat.host == "127.0.0.1"
    assert overrides == []


def test_run_reads_conf_embedded_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "embedded.conf").write_text("# mine\nWA_WEB_PORT=9555\nWA_LOG_LEVEL=WARNING\n")
    monkeypatch.chdir(tmp_path)
    s, overrides = run_settings(env={"WA_LOG_LEVEL": "ERROR"})
    assert s.web.port == 9555
    assert s.log.level == "ERROR"  # the environment comes after the file
    assert overrides == ["WA_WEB_PORT"]
    other = tmp_path / "other.conf"
    other.write_text("WA_WEB_PORT=9666\n")
    assert run_settings(env={}, env_file=other)[0].web.port == 9666
    with pytest.raises(ConfigError, match="not found"):
        run_settings(env={}, env_file=tmp_path / "missing.conf")


def test_migration_trees() -> None:
    trees = migration_trees()
    assert [(app, table) for app, _, table in trees] == [
        ("coreapp", "alembic_version_coreapp"),
        ("webapp", "alembic_version_webapp"),
    ]
    assert all(location.name == "migrations" and location.parent.name == app for app, location, _ in trees)


# ------------------------------------------------------------------------------------------ command line


def test_parser() -> None:
    parser = build_parser()
    args = parser.parse_args(["run"])
    assert (args.command, args.sandbox, args.quickstart, args.env_file) == ("run", True, True, None)
    args = parser.parse_args(["run", "--no-sandbox", "--no-quickstart", "--env-file", "x.conf"])
    assert (args.sandbox, args.quickstart, args.env_file) == (False, False, Path("x.conf"))
    args = parser.parse_args(["webhook-echo", "--port", "8001"])
    assert (args.host, args.port) == ("127.0.0.1", 8001)
    assert parser.parse_args(["migrate"]).command == "migrate"
    assert parser.parse_args(["healthcheck", "coreapp"]).target == "coreapp"
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_sandbox_forwards_to_chatd_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    fake = types.ModuleType("chatd.cli")
    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "chatd.cli", fake)
    assert main(["sandbox", "code", "12025550100", "--help"]) == 3
    assert seen == [["code", "12025550100", "--help"]]


def test_quickstart_command_prints_the_banner(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quickstart"]) == 0
    assert capsys.readouterr().out == banner()


def test_module_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "openprem", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for command in ("run", "migrate", "sandbox", "webhook-echo", "quickstart", "healthcheck"):
        assert command in out


# ------------------------------------------------------------------------------------------ quick start


def _readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- quickstart:begin -->\n```sh\n(.*?)```\n<!-- quickstart:end -->", text, re.S)
    assert match, "README.md lacks the quick-start block between <!-- quickstart:begin/end --> markers"
    return match.group(1)


def test_readme_quickstart_is_what_the_launcher_prints() -> None:
    block = _readme_block()
    assert block == commands(), "README quick start differs: paste `python -m openprem quickstart` into it"
    printed = banner()
    for line in block.splitlines():
        assert line in printed


def test_quickstart_content() -> None:
    text = banner()
    assert DEFAULT_API == "https://localhost:9090/v1"
    assert "API=https://localhost:9090/v1" in text
    for needle in (
        '"$API/users/login" -u admin:secret',
        '"new_password":',
        '.venv/bin/python -m chatd cert --cc 1 --phone-number 2025550100 --vname "OpenPrem Demo"',
        '"$API/account"',
        ".venv/bin/python -m chatd code 12025550100",
        '"$API/account/verify"',
        ".venv/bin/python -m openprem webhook-echo --port 8000",
        '"webhooks":{"url":"http://127.0.0.1:8000/webhook"}',
        '"to":"12025550123","type":"text","text":{"body":"Hello from OpenPrem"}',
        ".venv/bin/python -m chatd inbox 12025550123",
        '.venv/bin/python -m chatd send 12025550123 --to 12025550100 --text "Hi back"',
    ):
        assert needle in text, needle
    assert banner(api="https://localhost:9443/v1").count("API=https://localhost:9443/v1") == 1
    assert "Sandbox admin" not in banner(sandbox_admin=None)


def test_quickstart_shell_syntax() -> None:
    result = subprocess.run(["bash", "-n"], input=commands(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------ run loop


class _Fake:
    def __init__(self, name: str, log: list[str], fail: bool = False, hang: bool = False) -> None:
        self.name, self.log, self.fail, self.hang = name, log, fail, hang

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def _fake_start_all(log: list[str], fail: str = "", hang: str = ""):
    async def start_all(settings: Settings, options: RunOptions, started: embedded._Started) -> Settings:
        for name in ("chatd", "coreapp", "bus", "webapp"):
            app = _Fake(name, log, fail=name == fail, hang=name == hang)
            await app.start()
            started.add(name, app.stop)
        return settings

    return start_all


async def test_serve_starts_in_order_and_stops_in_reverse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log: list[str] = []
    monkeypatch.setattr(embedded, "_start_all", _fake_start_all(log))
    stop = asyncio.Event()
    settings = embedded_settings(load_settings(env={}))
    task = asyncio.ensure_future(serve(settings, RunOptions(), stop))
    for _ in range(100):
        if "start webapp" in log:
            break
        await asyncio.sleep(0.01)
    stop.set()
    assert await task == 0
    assert log == [
        "start chatd", "start coreapp", "start bus", "start webapp",
        "stop webapp", "stop bus", "stop coreapp", "stop chatd",
    ]  # fmt: skip
    assert "QUICK START" in capsys.readouterr().out


async def test_serve_start_failure_stops_what_started(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setattr(embedded, "_start_all", _fake_start_all(log, fail="webapp"))
    settings = embedded_settings(load_settings(env={}))
    assert await serve(settings, RunOptions(quickstart=False), asyncio.Event()) == 1
    assert log == [
        "start chatd",
        "start coreapp",
        "start bus",
        "start webapp",
        "stop bus",
        "stop coreapp",
        "stop chatd",
    ]


async def test_stop_during_start(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setattr(embedded, "_start_all", _fake_start_all(log, hang="coreapp"))
    stop = asyncio.Event()
    settings = embedded_settings(load_settings(env={}))
    task = asyncio.ensure_future(serve(settings, RunOptions(quickstart=False), stop))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(task, 5) == 0
    assert log == ["start chatd", "start coreapp", "stop chatd"]


# ------------------------------------------------------------------------------------------ helpers


async def test_webhook_echo_answers_200_and_prints() -> None:
    out = io.StringIO()
    async with TestClient(TestServer(make_app(out))) as client:
        resp = await client.post("/webhook", json={"statuses": [{"id": "m1", "status": "sent"}]})
        assert resp.status == 200
        resp = await client.post("/other", data=b"not json")
        assert resp.status == 200
    printed = out.getvalue()
    assert "POST /webhook" in printed and '"status": "sent"' in printed
    assert "POST /other" in printed and "not json" in printed


def test_healthcheck_webapp_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        settings = load_settings(env={"WA_WEB_HOSTNAME": "0.0.0.0", "WA_WEB_PORT": str(port)})
        assert problems("webapp", settings) == []
    assert problems("webapp", settings) != []
    assert problems("nonsense", settings) != []
    assert problems("coreapp", load_settings(env={})) == []  # SQLite + LocalBus: nothing to reach
