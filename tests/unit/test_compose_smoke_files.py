"""What the compose smoke test (``make compose-smoke``, tests/compose_smoke) found, kept from coming back without
docker: no BuildKit frontend fetch, database health checks that log in, and an override that moves every port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.compose_smoke.engine import STANDIN_FOR, STANDINS, referenced_base_images
from tests.compose_smoke.run import VARIANTS, Ports, write_override

ROOT = Path(__file__).resolve().parents[2]


class _ResetLoader(yaml.SafeLoader):
    """Reads compose's ``!reset`` tag (Compose v2) as the empty value it resets to."""


_ResetLoader.add_constructor("!reset", lambda loader, node: [])


def test_dockerfiles_need_no_frontend_image() -> None:
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        first = dockerfile.read_text().splitlines()[0]
        assert not first.lower().startswith("# syntax="), f"{dockerfile.name}: BuildKit would pull {first}"


def test_every_base_image_has_a_stand_in() -> None:
    refs = referenced_base_images()
    assert {"python:3.11-slim", "mysql:8.0", "postgres:17", "eclipse-mosquitto:2"} <= refs
    assert refs <= set(STANDIN_FOR)
    for name in STANDIN_FOR.values():
        assert (STANDINS / name).is_file()


def test_database_health_checks_authenticate() -> None:
    """``mysqladmin ping`` and ``pg_isready`` report a server that refuses the apps' password as healthy."""
    for variant, path in VARIANTS.items():
        services = yaml.safe_load(path.read_text())["services"]
        check = " ".join(services[variant]["healthcheck"]["test"])
        if variant == "mysql":
            assert '"$$MYSQL_PASSWORD"' in check and '"$$MYSQL_USER"' in check and "mysqladmin ping" not in check
        else:
            assert '"$$WA_DB_PASSWORD"' in check and "-U openprem" in check and "pg_isready" not in check


def test_override_moves_every_port_and_uses_host_networking(tmp_path: Path) -> None:
    ports = Ports(*range(21001, 21009))
    for variant in VARIANTS:
        text = write_override(variant, ports, tmp_path).read_text()
        override: dict[str, Any] = yaml.load(text, _ResetLoader)  # a SafeLoader
        services = override["services"]
        assert set(services) == {variant, "mosquitto", "chatd", "coreapp", "webapp"}
        assert all(s["network_mode"] == "host" for s in services.values())
        assert services["webapp"]["ports"] == []
        for app in ("chatd", "coreapp", "webapp"):
            env = services[app]["environment"]
            assert services[app]["build"] == {"network": "host"}
            assert env["WA_DB_PORT"] == "21001" and env["WA_MQTT_PORT"] == "21002"
            assert env["WA_SANDBOX_ADMIN_PORT"] == "21006" and env["WA_WEB_PORT"] == "21007"
        conf = (tmp_path / "mosquitto.conf").read_text()
        assert "listener 21002 127.0.0.1\n" in conf and "listener 1883" not in conf
        assert "-p 21002" in " ".join(services["mosquitto"]["healthcheck"]["test"])
