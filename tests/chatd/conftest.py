"""chatd in-process on free ports, its admin API, and connected test clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatd.app import Chatd
from shared.config import SandboxSettings
from tests.chatd.client import Admin
from tests.support.ports import free_port


@pytest.fixture
def settings(tmp_path: Path) -> SandboxSettings:
    return SandboxSettings(
        host="127.0.0.1",
        port=free_port(),
        fallback_port=free_port(),
        admin_port=free_port(),
        media_port=free_port(),
        data_dir=tmp_path / "chatd",
        receipt_delay_s=0.05,
        read_delay_s=0.1,
    )


@pytest.fixture
async def chatd(settings: SandboxSettings) -> AsyncIterator[Chatd]:
    app = Chatd(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def admin(chatd: Chatd) -> AsyncIterator[Admin]:
    client = Admin(chatd.admin_url)
    try:
        yield client
    finally:
        await client.close()
