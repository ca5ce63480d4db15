"""``python -m chatd``: the admin CLI against a running chatd, and serving as its own process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from chatd.app import Chatd
from chatd.cli import run
from tests.chatd.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(run, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_cli_commands(chatd: Chatd, capsys: pytest.CaptureFixture[str]) -> None:
    url = ("--admin-url", chatd.admin_url)
    code, out, _ = await cli(capsys, *url, "cert", "--cc", "1", "--phone-number", "2025550100", "--vname", "Demo")
    assert code == 0 and len(out.strip()) > 40
    code, out, _ = await cli(capsys, *url, "phone-create", "12025550123", "--name", "Kerry Fisher", "--devices", "2")
    assert code == 0 and json.loads(out) == {"wa_id": "12025550123"}
    code, out, _ = await cli(capsys, *url, "phone-set", "12025550123", "online=false", "client_version=2.21.15.15")
    doc = json.loads(out)
    assert (doc["online"], doc["client_version"], len(doc["devices"])) == (False, "2.21.15.15", 2)
    code, out, _ = await cli(capsys, *url, "phone-get")
    assert [p["name"] for p in json.loads(out)["phones"]] == ["Kerry Fisher"]
    code, out, _ = await cli(capsys, *url, "inbox", "12025550123")
    assert json.loads(out) == {"messages": []}
    code, out, _ = await cli(capsys, *url, "templates")
    assert any(t["name"] == "hello_world" for t in json.loads(out)["templates"])
    code, out, _ = await cli(capsys, *url, "fault", "drop_after", "frames=3")
    assert json.loads(out)["faults"] == [{"kind": "drop_after", "frames": 3}]
    code, out, _ = await cli(capsys, *url, "clear-faults")
    assert json.loads(out) == {"faults": []}
    code, out, _ = await cli(capsys, *url, "clock-advance", "60")
    assert json.loads(out)["offset_s"] == 60
    code, _, err = await cli(capsys, *url, "code", "12025550100")
    assert code == 1 and "404" in err
    code, _, err = await cli(capsys, *url, "send", "12025550123", "--to", "12025550100", "--text", "hi")
    assert code == 1 and "registered business" in err


async def test_python_m_chatd_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    admin_port = free_port()
    env = {
        **os.environ,
        "WA_CONFIG_FILE": str(tmp_path / "none.conf"),
        "WA_SANDBOX_HOSTNAME": "127.0.0.1",
        "WA_SANDBOX_PORT": str(free_port()),
        "WA_SANDBOX_FALLBACK_PORT": str(free_port()),
        "WA_SANDBOX_ADMIN_PORT": str(admin_port),
        "WA_SANDBOX_MEDIA_PORT": str(free_port()),
        "WA_SANDBOX_DATA_DIR": str(tmp_path / "chatd"),
        "WA_SANDBOX_DEMO": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatd", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    phones: list[dict[str, object]] = []
    try:
        async with aiohttp.ClientSession() as http:
            # First start in a fresh clone compiles every module and generates chatd's CA and keys: allow 30 s.
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{admin_port}/admin/phones") as resp:
                        phones = (await resp.json())["phones"]
                        if len(phones) == 2:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        assert sorted(str(p["name"]) for p in phones) == ["Kerry Fisher", "Sam Lee"], "chatd did not come up"
        assert (tmp_path / "chatd" / "ca.pem").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, stderr.decode()
    assert b"chatd stopped" in stderr
