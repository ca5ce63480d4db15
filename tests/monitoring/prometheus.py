"""The shipped monitoring files, and a real Prometheus server running the shipped scrape configuration.

``render_config`` turns ``compose/monitoring/prometheus/prometheus.yml`` and its ``targets/*.yml`` into the
configuration of a deployment on loopback by replacing exactly three things: the intervals (global and per job),
the API-key file (compose writes it to a tmpfs) and the target address (compose's ``webapp:443``).  Everything
else — jobs, paths, parameters, authorization, TLS, node labels — is the file compose runs.  ``dashboard_queries``
lists every query of the shipped Grafana dashboard with Grafana's variables replaced, as Grafana would send it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MONITORING_DIR = ROOT / "compose" / "monitoring"
COMPOSE_FILE = MONITORING_DIR / "compose.monitoring.yaml"
PROMETHEUS_DIR = MONITORING_DIR / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
TARGETS_DIR = PROMETHEUS_DIR / "targets"
GRAFANA_DIR = MONITORING_DIR / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "openprem.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "openprem.yaml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "openprem.yaml"

COMPOSE_KEY_FILE = "/run/openprem/web_api_key"
"""Where compose's Prometheus entrypoint writes WA_WEB_API_KEY (a tmpfs), as prometheus.yml names it."""
COMPOSE_WEBAPP = "webapp:443"
"""The webapp address in the shipped targets: the compose service on its container port."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/sbin")


def promtool_binary() -> str | None:
    return shutil.which("promtool") or shutil.which("promtool", path="/usr/bin:/usr/sbin")


TARGETS_MULTICONNECT_DIR = PROMETHEUS_DIR / "targets-multiconnect"
MULTICONNECT_OVERLAY = MONITORING_DIR / "compose.monitoring.multiconnect.yaml"


def render_config(
    dest: Path,
    *,
    web_address: str,
    api_key: str,
    interval_s: int,
    targets_dir: Path = TARGETS_DIR,
    compose_webapps: tuple[str, ...] = (COMPOSE_WEBAPP,),
) -> Path:
    """The shipped configuration for a webapp at ``web_address`` (host:port), written under ``dest``.

    ``targets_dir``/``compose_webapps``: the multiconnect targets (``targets-multiconnect/``), whose groups name
    compose's web-1 and web-2; the first is replaced by ``web_address``, groups of the others are left out (one
    webapp serves every node's stats in a test)."""
    config = load_yaml(PROMETHEUS_CONFIG)
    interval = f"{interval_s}s"
    config["global"].update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)
    dest.mkdir(parents=True, exist_ok=True)
    key_file = dest / "web_api_key"
    key_file.write_text(api_key, encoding="utf-8")
    key_file.chmod(0o600)
    for job in config["scrape_configs"]:
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = interval
        auth = job["authorization"]
        assert auth["credentials_file"] == COMPOSE_KEY_FILE, job["job_name"]
        auth["credentials_file"] = str(key_file)
    (dest / "targets").mkdir(exist_ok=True)
    for source in sorted(targets_dir.glob("*.yml")):
        groups = []
        for group in load_yaml(source):
            assert len(group["targets"]) == 1 and group["targets"][0] in compose_webapps, source.name
            if group["targets"] == [compose_webapps[0]]:
                groups.append({**group, "targets": [web_address]})
        (dest / "targets" / source.name).write_text(yaml.safe_dump(groups), encoding="utf-8")
    path = dest / "prometheus.yml"  # relative paths (targets/*.yml) resolve against this file's directory
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


GRAFANA_VARIABLES = {"$__rate_interval": "$RATE", "$__interval": "$STEP", "$__range": "$RANGE"}


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str


def dashboard_queries(rate_window: str, step: str = "5s", range_: str = "5m") -> list[PanelQuery]:
    """Every target of every panel of the shipped dashboard, with Grafana's interval variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    values = {"$RATE": rate_window, "$STEP": step, "$RANGE": range_}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, placeholder in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, values[placeholder])
            assert "$" not in expr, f"{panel['title']}: a variable the test does not know: {expr}"
            queries.append(PanelQuery(panel["title"], target["refId"], expr))
    return queries


class PrometheusServer:
    """``prometheus`` on a free loopback port with its own TSDB directory, stopped with SIGTERM."""

    def __init__(self, config: Path, workdir: Path, binary: str) -> None:
        self.config = config
        self.workdir = workdir
        self.binary = binary
        self.port = free_port()
        self.log_path = workdir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 30.0) -> None:
        argv = [
            self.binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=info",
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                if self._proc.poll() is not None:
                    raise AssertionError(f"prometheus exited with {self._proc.returncode}\n{self.logs()}")
                try:
                    async with session.get(f"{self.url}/-/ready") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"prometheus was not ready within {timeout_s}s\n{self.logs()}")
                await asyncio.sleep(0.2)

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def logs(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def query(self, session: aiohttp.ClientSession, expr: str) -> list[dict[str, Any]]:
        """``/api/v1/query`` at now: the result's series (a vector's samples or a matrix's series)."""
        async with session.get(f"{self.url}/api/v1/query", params={"query": expr}) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["status"] == "success", f"{expr}: {body}"
        result = body["data"]["result"]
        assert isinstance(result, list), f"{expr}: a {body['data']['resultType']}, not a vector"
        return result

    async def targets(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"{self.url}/api/v1/targets", params={"state": "active"}) as resp:
            body = await resp.json()
        return list(body["data"]["activeTargets"])
