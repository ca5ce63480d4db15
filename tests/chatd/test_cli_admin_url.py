"""``python -m chatd <command>`` finds chatd's admin API where chatd listens: WA_SANDBOX_ADMIN_HOSTNAME/_PORT.

In a container (compose) the CLI runs with the same environment and env file as chatd, so a moved admin port
must not need ``--admin-url`` (issue 14: the smoke test moves every port).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chatd.app import Chatd
from chatd.cli import DEFAULT_ADMIN_URL, default_admin_url, run


def test_default_without_variables(tmp_path: Path) -> None:
    assert default_admin_url({}, tmp_path / "missing.conf") == DEFAULT_ADMIN_URL


def test_environment_port_and_host(tmp_path: Path) -> None:
    env = {"WA_SANDBOX_ADMIN_PORT": "29091", "WA_SANDBOX_ADMIN_HOSTNAME": "127.0.0.2"}
    assert default_admin_url(env, tmp_path / "missing.conf") == "http://127.0.0.2:29091"


def test_wildcard_and_ipv6_hosts(tmp_path: Path) -> None:
    none = tmp_path / "missing.conf"
    assert default_admin_url({"WA_SANDBOX_ADMIN_HOSTNAME": "0.0.0.0"}, none) == "http://127.0.0.1:9091"
    assert default_admin_url({"WA_SANDBOX_ADMIN_HOSTNAME": "::1", "WA_SANDBOX_ADMIN_PORT": "1"}, none) == (
        "http://[::1]:1"
    )


def test_env_file_then_environment(tmp_path: Path) -> None:
    conf = tmp_path / "whatsapp.conf"
    conf.write_text("WA_SANDBOX_ADMIN_HOSTNAME=\nWA_SANDBOX_ADMIN_PORT=19091\n")
    assert default_admin_url({}, conf) == "http://127.0.0.1:19091"
    assert default_admin_url({"WA_SANDBOX_ADMIN_PORT": "29091"}, conf) == "http://127.0.0.1:29091"
    # An empty variable means the default, as chatd reads it (shared.config.load_settings), not the file's value.
    assert default_admin_url({"WA_SANDBOX_ADMIN_PORT": ""}, conf) == DEFAULT_ADMIN_URL


def test_config_file_named_by_wa_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "chatd.conf"
    conf.write_text("WA_SANDBOX_ADMIN_PORT=19092\n")
    monkeypatch.setenv("WA_CONFIG_FILE", str(conf))
    monkeypatch.delenv("WA_SANDBOX_ADMIN_PORT", raising=False)
    monkeypatch.delenv("WA_SANDBOX_ADMIN_HOSTNAME", raising=False)
    assert default_admin_url() == "http://127.0.0.1:19092"


async def test_cli_reaches_a_moved_admin_port_without_admin_url(
    chatd: Chatd, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host, _, port = chatd.admin_url.removeprefix("http://").rpartition(":")
    assert port != "9091"
    monkeypatch.setenv("WA_CONFIG_FILE", str(tmp_path / "none.conf"))
    monkeypatch.setenv("WA_SANDBOX_ADMIN_HOSTNAME", host)
    monkeypatch.setenv("WA_SANDBOX_ADMIN_PORT", port)
    code = await asyncio.to_thread(run, ["health"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert isinstance(json.loads(out.out), dict)
    monkeypatch.setenv("WA_SANDBOX_ADMIN_PORT", "1")  # nothing listens there: the error names that URL
    code = await asyncio.to_thread(run, ["health"])
    assert code == 1 and f"http://{host}:1" in capsys.readouterr().err
