"""compose/monitoring agrees with itself, with the base compose files and with the apps (no docker engine needed).

The live half is tests/monitoring: a real Prometheus on the same prometheus.yml, every dashboard query evaluated.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.config import load_settings, read_env_file
from tests.monitoring.prometheus import (
    COMPOSE_FILE,
    COMPOSE_KEY_FILE,
    COMPOSE_WEBAPP,
    DASHBOARD,
    DASHBOARD_PROVIDERS,
    DATASOURCES,
    GRAFANA_DIR,
    PROMETHEUS_CONFIG,
    PROMETHEUS_DIR,
    TARGETS_DIR,
    load_yaml,
)
from tests.unit.test_compose import (
    COMPOSE_DIR,
    COMPOSE_FILES,
    CONF,
    ENV_EXAMPLE,
    MONITORING_SECRETS,
    _environment,
    _interpolate,
    _mounts,
    _required_vars,
    _secrets,
)
from webapp.auth import API_KEY_ROUTES, API_KEY_SCHEME
from webapp.routes.ops import FORMATS

API_KEY = "k" * 48
GRAFANA_PASSWORD = "grafana-admin-password-of-this-install"


def _overlay() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, Any]:
    services = _overlay()["services"]
    assert isinstance(services, dict)
    return services


def _secret_values() -> dict[str, str]:
    return {**_secrets(), "WA_WEB_API_KEY": API_KEY, "WA_GRAFANA_ADMIN_PASSWORD": GRAFANA_PASSWORD}


def _flag(command: list[str], name: str) -> str:
    (value,) = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    return value


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    """The host path (relative paths against compose/, the base file's directory) mounted at ``container_path``."""
    target = PurePosixPath(container_path)
    for mount_target, source in _mounts(service).items():
        if target == PurePosixPath(mount_target) or PurePosixPath(mount_target) in target.parents:
            assert source.startswith("."), f"{container_path} is on the volume {source}, not a shipped file"
            return COMPOSE_DIR / source / target.relative_to(mount_target)
    raise AssertionError(f"nothing is mounted at {container_path}")


def test_overlay_services_and_images() -> None:
    services = _services()
    assert set(services) == {"webapp", "prometheus", "grafana"}
    assert set(services["webapp"]) == {"environment"}, "the overlay only gives webapp its API key"
    assert services["prometheus"]["image"].startswith("prom/prometheus:v2.")
    assert services["grafana"]["image"].startswith("grafana/grafana:11.")
    for name in ("prometheus", "grafana"):
        assert not services[name]["image"].endswith(":latest"), name
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), f"{name}: loopback only"
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    declared = set(_overlay()["volumes"])
    for service in services.values():
        for source in _mounts(service).values():
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{source} (relative to compose/, the base file)"
            else:
                assert source in declared, source


def test_monitoring_containers_are_hardened() -> None:
    for name in ("prometheus", "grafana"):
        service = _services()[name]
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True and "/tmp" in service["tmpfs"], name
        assert "MKNOD" in service["cap_drop"] and "privileged" not in service, name
        assert all(entry.endswith(":ro") for entry in service["volumes"] if entry.startswith(".")), name


@pytest.mark.parametrize("base", sorted(COMPOSE_FILES))
def test_webapp_gets_the_key_prometheus_sends(base: str) -> None:
    secrets = _secret_values()
    base_webapp = load_yaml(COMPOSE_FILES[base])["services"]["webapp"]
    env = {**read_env_file(CONF), **_environment(base_webapp, secrets), **_environment(_services()["webapp"], secrets)}
    web = load_settings(env=env).web
    assert web.api_key_sha256 == hashlib.sha256(API_KEY.encode()).digest()
    assert _environment(_services()["prometheus"], secrets)["WA_WEB_API_KEY"] == API_KEY


def test_monitoring_secrets_come_from_compose_env() -> None:
    raw = COMPOSE_FILE.read_text(encoding="utf-8")
    assert _required_vars(raw) == MONITORING_SECRETS
    assert set(read_env_file(ENV_EXAMPLE)) >= MONITORING_SECRETS
    for service in _services().values():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key or "KEY" in key:
                with pytest.raises(LookupError, match=r"compose/\.env"):
                    _interpolate(str(value), {})


def test_prometheus_runs_the_shipped_config() -> None:
    service = _services()["prometheus"]
    command = service["command"]
    assert _host_path(service, _flag(command, "config.file")) == PROMETHEUS_CONFIG
    assert _mounts(service)[_flag(command, "storage.tsdb.path")] == "prometheusData"
    # The entrypoint (shipped beside the config) writes the key where credentials_file points, on a tmpfs.
    assert service["entrypoint"][0] == "/bin/sh"
    entrypoint = _host_path(service, service["entrypoint"][1])
    assert entrypoint == PROMETHEUS_DIR / "entrypoint.sh"
    script = entrypoint.read_text(encoding="utf-8")
    assert f'key_file="${{OPENPREM_API_KEY_FILE:-{COMPOSE_KEY_FILE}}}"' in script and "umask 077" in script
    assert 'exec "$@"' in script and command[0] == "/bin/prometheus"
    assert str(PurePosixPath(COMPOSE_KEY_FILE).parent) in service["tmpfs"]
    listen = _flag(command, "web.listen-address")
    assert listen.rsplit(":", 1)[1] == "9090"
    assert all(port.endswith(":9090") for port in service["ports"])


def test_scrape_jobs_read_what_webapp_serves() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"openprem-webapp", "openprem-coreapp", "openprem-db"}
    paths = {name: job["metrics_path"] for name, job in jobs.items()}
    assert paths == {"openprem-webapp": "/metrics", "openprem-coreapp": "/v1/stats/app", "openprem-db": "/v1/stats/db"}
    web_port = load_settings(env={}, env_file=CONF).web.port
    assert f"webapp:{web_port}" == COMPOSE_WEBAPP
    assert "webapp" in load_yaml(COMPOSE_FILES["mysql"])["services"]
    for name, job in jobs.items():
        assert job["metrics_path"] in API_KEY_ROUTES, name
        assert job["params"] == {"format": ["prometheus"]} and "prometheus" in FORMATS, name
        assert job["scheme"] == "https", name
        assert job["authorization"]["type"].lower() == API_KEY_SCHEME, name
        assert job["authorization"]["credentials_file"] == COMPOSE_KEY_FILE, name
        for sd in job["file_sd_configs"]:
            for file in sd["files"]:
                assert (PROMETHEUS_CONFIG.parent / file).is_file(), f"{name}: {file}"
    for targets in sorted(TARGETS_DIR.glob("*.yml")):
        groups = load_yaml(targets)
        nodes = [group["labels"]["node"] for group in groups]
        assert len(nodes) == len(set(nodes)), f"{targets.name}: one entry per node, each its own node label"
        assert all(group["targets"] == [COMPOSE_WEBAPP] for group in groups), targets.name


def test_grafana_provisioning_matches_compose_and_prometheus() -> None:
    service = _services()["grafana"]
    env = _environment(service, _secret_values())
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == GRAFANA_PASSWORD
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert _host_path(service, "/etc/grafana/provisioning/datasources/openprem.yaml") == DATASOURCES
    assert _host_path(service, env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]) == DASHBOARD
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert _host_path(service, provider["options"]["path"]) == DASHBOARD.parent
    assert DASHBOARD.parent.is_relative_to(GRAFANA_DIR)

    (source,) = load_yaml(DATASOURCES)["datasources"]
    url = urlsplit(source["url"])
    prometheus = _services()["prometheus"]
    assert url.hostname == "prometheus" and str(url.port) == _flag(prometheus["command"], "web.listen-address")[1:]
    assert source["type"] == "prometheus"
    assert source["jsonData"]["timeInterval"] == load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert service["depends_on"] == {"prometheus": {"condition": "service_healthy"}}

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]


def test_dashboard_has_every_panel_the_operators_need() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "openprem-overview" and dashboard["editable"] is False
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        'messages_sent_total{result="sent"}',  # sent
        'message_receipts_total{status="delivered"}',  # delivered
        'message_receipts_total{status="read"}',  # read
        'messages_sent_total{result="failed"}',  # failed (refused by the network) ...
        'message_receipts_total{status="failed"}',  # ... and failed receipts
        "histogram_quantile(0.99, sum by (le) (rate(webapp_http_request_duration_seconds_bucket",  # API latency
        "callback_queue_size",  # webhook backlog
        "callback_oldest_pending_age_seconds",  # the oldest event's age
        "chat_reconnects_total",  # reconnects
        "db_request_duration_us_sum",  # DB transaction timings
        "disk_free_bytes - ignoring(dir) group_left disk_min_free_bytes",  # disk-space margin
        "node_role",  # per-node role
    ):
        assert metric in exprs, metric
    assert not re.search(r"\$(?!__rate_interval\b)", exprs), "only Grafana's $__rate_interval (tests/monitoring)"
