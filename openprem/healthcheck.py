"""``openprem healthcheck webapp|coreapp|chatd``: the containers' HEALTHCHECK (exit 0 healthy, 1 not).

Stdlib only and a few seconds at most.  webapp: its HTTPS port accepts connections.  chatd: its admin API
answers ``GET /admin/health`` and its chat port accepts connections.  coreapp listens on nothing, so its check
is that the process can reach its database and broker (the container stops when the process dies); a check
through the bus (``health.get``) would be stronger and is left for later.
"""

from __future__ import annotations

import json
import socket
import urllib.request

from shared.config import BusKind, DbEngine, Settings, default_env_file, load_settings

TIMEOUT_S = 3.0
TARGETS = ("webapp", "coreapp", "chatd")


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _tcp(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as exc:
        return f"{host}:{port} not accepting connections ({exc})"


def problems(target: str, settings: Settings) -> list[str]:
    """What is wrong with ``target`` (empty when healthy)."""
    found: list[str | None] = []
    if target == "webapp":
        found.append(_tcp(_loopback(settings.web.host), settings.web.port))
    elif target == "chatd":
        sandbox = settings.sandbox
        url = f"http://{_loopback(sandbox.admin_host)}:{sandbox.admin_port}/admin/health"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                status = json.loads(resp.read()).get("status")
            if status != "ok":
                found.append(f"{url} says {status!r}")
        except (OSError, ValueError) as exc:
            found.append(f"{url}: {exc}")
        found.append(_tcp(_loopback(sandbox.host), sandbox.port))
    elif target == "coreapp":
        if settings.db.engine is not DbEngine.SQLITE:
            found.append(_tcp(settings.db.hostname, settings.db.effective_port))
        if settings.bus.kind is BusKind.MQTT:
            found.append(_tcp(settings.bus.mqtt_host, settings.bus.mqtt_port))
    else:
        found.append(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return [p for p in found if p]


def main(target: str) -> int:
    issues = problems(target, load_settings(env_file=default_env_file()))
    for issue in issues:
        print(f"unhealthy: {issue}")
    return 1 if issues else 0
