"""Monitoring a multiconnect deployment: a real Prometheus with the shipped scrape configuration and the shipped
per-node targets (``targets-multiconnect/``) scrapes every master and coreapp of a running deployment (two masters,
two shards on three coreapps, MariaDB, the authenticated Mosquitto), each through webapp with ``?node=``; every
node is up and reports its own role, and the dashboard's role panel shows each of them."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.conftest import mqtt_broker, pytest_runtest_makereport
from tests.e2e.harness import Api, WebhookReceiver, wait_until
from tests.ha.harness import Multiconnect, setup_number
from tests.monitoring.prometheus import (
    MULTICONNECT_OVERLAY,
    TARGETS_MULTICONNECT_DIR,
    PrometheusServer,
    dashboard_queries,
    load_yaml,
    prometheus_binary,
    render_config,
)
from tests.support.mosquitto import PrivateMosquitto, skip_or_fail
from tests.support.services import db_settings_for, drop_database

__all__ = ["mqtt_broker", "pytest_runtest_makereport"]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SCRAPE_INTERVAL_S = 2
COMPOSE_WEBAPPS = ("web-1:443", "web-2:443")


@pytest.fixture
async def cluster_and_prometheus(
    request: pytest.FixtureRequest, tmp_path: Path, mqtt_broker: PrivateMosquitto
) -> AsyncIterator[tuple[Multiconnect, PrometheusServer]]:
    binary = prometheus_binary()
    if binary is None:
        skip_or_fail("prometheus is not installed (apt-get install --no-install-recommends prometheus)")
        raise AssertionError("unreachable")
    db = db_settings_for("mariadb", tmp_path)
    api_key = "scrape-" + secrets.token_urlsafe(32)
    extra = {"WA_WEB_API_KEY": api_key, "WA_KEYSTORE_KEY": base64.b64encode(os.urandom(32)).decode()}
    cluster = Multiconnect(
        tmp_path / "mc", db, mqtt_broker.port, extra, mqtt_users=mqtt_broker.users, masters=2, coreapps=3
    )
    config = render_config(
        tmp_path / "prometheus",
        web_address=f"127.0.0.1:{cluster.web_port}",
        api_key=api_key,
        interval_s=SCRAPE_INTERVAL_S,
        targets_dir=TARGETS_MULTICONNECT_DIR,
        compose_webapps=COMPOSE_WEBAPPS,
    )
    prometheus = PrometheusServer(config, tmp_path / "prometheus", binary)
    try:
        await cluster.start()
        await prometheus.start()
        yield cluster, prometheus
    finally:
        prometheus.stop()
        await cluster.stop()
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(cluster.logs())
            print(f"----- prometheus -----\n{prometheus.logs()}")
        await drop_database(db)


def test_the_targets_are_the_multiconnect_compose_nodes() -> None:
    """One coreapp-job entry per master and coreapp of compose.multiconnect.yaml, asked by ``?node=``."""
    compose = load_yaml(Path(__file__).resolve().parents[2] / "compose" / "compose.multiconnect.yaml")
    def nodes(app: str) -> set[str]:  # the long-running nodes, not the one-shot migrate / shards steps
        return {
            service["environment"]["WA_NODE_ID"]
            for service in compose["services"].values()
            if service.get("command") == ["python", "-m", app]
        }

    coreapps, webapps = nodes("coreapp"), nodes("webapp")
    assert len(coreapps) == 5 and len(webapps) == 2, (coreapps, webapps)
    groups = load_yaml(TARGETS_MULTICONNECT_DIR / "coreapp.yml")
    assert sorted(g["labels"]["node"] for g in groups) == sorted(coreapps)
    assert all(g["labels"]["__param_node"] == g["labels"]["node"] for g in groups)
    web_groups = load_yaml(TARGETS_MULTICONNECT_DIR / "webapp.yml")
    assert sorted(g["labels"]["node"] for g in web_groups) == sorted(webapps)
    assert sorted(g["targets"][0] for g in web_groups) == sorted(f"{w}:443" for w in webapps)


class _ComposeLoader(yaml.SafeLoader):
    """Compose's ``!override`` tag: the value replaces the extended service's instead of merging with it."""


_ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: (
        loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode) else loader.construct_mapping(node)
    ),
)


def test_the_multiconnect_overlay_mounts_those_targets_and_keys_every_webapp() -> None:
    overlay = yaml.load(MULTICONNECT_OVERLAY.read_text(encoding="utf-8"), Loader=_ComposeLoader)
    services = overlay["services"]
    for web in ("web-1", "web-2"):
        assert "WA_WEB_API_KEY" in services[web]["environment"]
    prometheus = services["prometheus"]
    assert prometheus["extends"] == {"file": "monitoring/compose.monitoring.yaml", "service": "prometheus"}
    assert "./monitoring/prometheus/targets-multiconnect:/etc/prometheus/targets:ro" in prometheus["volumes"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert set(prometheus["depends_on"]) == {"web-1"}
    assert services["grafana"]["extends"]["service"] == "grafana"


async def test_every_node_is_scraped_with_its_role(
    cluster_and_prometheus: tuple[Multiconnect, PrometheusServer],
) -> None:
    cluster, prometheus = cluster_and_prometheus
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, cluster.web_url)
            await setup_number(cluster, api, receiver, shards=2)
            expected = {*cluster.master_names, *cluster.coreapp_names}

            async def roles() -> dict[str, str]:
                series = await prometheus.query(session, 'node_role{job="openprem-coreapp"} == 1')
                return {s["metric"]["node"]: s["metric"]["role"] for s in series}

            last: dict[str, Any] = {}

            async def all_scraped() -> bool:
                up = await prometheus.query(session, 'up{job="openprem-coreapp"}')
                last.update(up={s["metric"]["node"]: s["value"][1] for s in up}, roles=await roles())
                scraped = {node for node, value in last["up"].items() if value == "1"}
                owners = [n for n, r in last["roles"].items() if r == "coreapp"]
                return scraped == expected and set(last["roles"]) == expected and len(owners) == 3

            try:
                await wait_until(all_scraped, 90, "every node scraped and reporting its role", interval_s=1.0)
            except AssertionError:
                targets = await prometheus.targets(session)
                errors = {t["labels"].get("node"): t.get("lastError") for t in targets if t.get("lastError")}
                raise AssertionError(f"last seen: {last}; scrape errors: {errors}") from None
            found = await roles()
            assert sorted(found.values()) == ["coreapp", "coreapp", "coreapp", "primary_master", "secondary_master"]
            shards = await prometheus.query(session, 'ha_shard{job="openprem-coreapp"} >= 0')
            assert sorted(int(float(s["value"][1])) for s in shards) == [0, 1], shards
            panels = [q for q in dashboard_queries(f"{10 * SCRAPE_INTERVAL_S}s") if "node_role" in q.expr]
            assert panels, "the dashboard has no role panel"
            for panel in panels:
                result: list[dict[str, Any]] = await prometheus.query(session, panel.expr)
                assert {s["metric"].get("node") for s in result} >= expected, (panel.panel, result)
    finally:
        await receiver.stop()
