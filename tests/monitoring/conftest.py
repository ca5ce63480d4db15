"""A deployment with webapp, coreapp and chatd as separate processes (PostgreSQL, the authenticated Mosquitto) and
a real Prometheus scraping it with the shipped configuration.

Prometheus is Debian's ``prometheus`` package: missing, the tests skip, unless ``WA_TEST_REQUIRE_SERVICES=1``
(``.ci/run`` installs it), which fails them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import mqtt_broker, pytest_runtest_makereport
from tests.e2e.harness import Deployment
from tests.monitoring.prometheus import PrometheusServer, prometheus_binary, render_config
from tests.support.mosquitto import PrivateMosquitto, skip_or_fail
from tests.support.services import db_settings_for, drop_database

__all__ = ["Monitored", "monitored", "mqtt_broker", "pytest_runtest_makereport"]

SCRAPE_INTERVAL_S = 2


@dataclass
class Monitored:
    deployment: Deployment
    prometheus: PrometheusServer
    api_key: str


@pytest.fixture
async def monitored(
    request: pytest.FixtureRequest, tmp_path: Path, mqtt_broker: PrivateMosquitto
) -> AsyncIterator[Monitored]:
    binary = prometheus_binary()
    if binary is None:
        skip_or_fail("prometheus is not installed (apt-get install --no-install-recommends prometheus)")
        raise AssertionError("unreachable")
    db = db_settings_for("postgres", tmp_path)
    api_key = "scrape-" + secrets.token_urlsafe(32)  # WA_WEB_API_KEY: 32+ characters, no spaces
    dep = Deployment(
        tmp_path / "deploy", db, mqtt_broker.port, {"WA_WEB_API_KEY": api_key}, mqtt_users=mqtt_broker.users
    )
    config = render_config(
        tmp_path / "prometheus",
        web_address=f"127.0.0.1:{dep.web_port}",
        api_key=api_key,
        interval_s=SCRAPE_INTERVAL_S,
    )
    prometheus = PrometheusServer(config, tmp_path / "prometheus", binary)
    try:
        await dep.start()
        await prometheus.start()
        yield Monitored(dep, prometheus, api_key)
    finally:
        prometheus.stop()
        await dep.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(dep.logs())
            print(f"----- prometheus -----\n{prometheus.logs()}")
        await drop_database(db)
