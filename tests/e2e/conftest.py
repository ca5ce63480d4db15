"""Fixtures for the end-to-end tests: a deployment per backend (SQLite embedded, MariaDB and PostgreSQL on
MQTT), with its processes stopped and their logs printed on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.config import DbEngine, DbSettings
from tests.e2e.harness import Deployment
from tests.support.mosquitto import PrivateMosquitto


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMosquitto]:
    """A private Mosquitto with TCP_NODELAY and persistence, authenticated like compose's (generated passwords,
    ``conf/mosquitto.acl``)."""
    broker = PrivateMosquitto.authenticated(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _deployment(
    request: pytest.FixtureRequest, backend: DbSettings, tmp_path: Path, extra: dict[str, str]
) -> AsyncIterator[Deployment]:
    broker: PrivateMosquitto | None = None
    if backend.engine is not DbEngine.SQLITE:
        broker = request.getfixturevalue("mqtt_broker")
    mqtt_port, users = (None, {}) if broker is None else (broker.port, broker.users)
    dep = Deployment(tmp_path / "deploy", backend, mqtt_port, extra, mqtt_users=users)
    try:
        await dep.start()
        yield dep
    finally:
        await dep.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(dep.logs())


@pytest.fixture
async def deployment(request: pytest.FixtureRequest, backend: DbSettings, tmp_path: Path) -> AsyncIterator[Deployment]:
    async for dep in _deployment(request, backend, tmp_path, {}):
        yield dep


@pytest.fixture
async def deployment_slow_receipts(
    request: pytest.FixtureRequest, backend: DbSettings, tmp_path: Path
) -> AsyncIterator[Deployment]:
    extra = {"WA_SANDBOX_RECEIPT_DELAY": "1.0", "WA_SANDBOX_READ_DELAY": "1.5"}
    async for dep in _deployment(request, backend, tmp_path, extra):
        yield dep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report
