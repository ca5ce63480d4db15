"""``make compose-smoke``: build the images, bring up each compose file, run the README quick start, take it down.

    python -m tests.compose_smoke.run [--variant mysql|postgres|all] [--keep] [--state-dir DIR]

For each of compose/compose.yaml (MySQL) and compose/compose.postgres.yaml (PostgreSQL): ``up --build --wait``
(the three images from docker/*.Dockerfile, every health check), the quick start (a)-(g) against it (webhooks to a
receiver in this process), then ``down --volumes``.  The project's compose files run as they are, plus an
override (written to a temporary directory) for this machine only: host networking (no bridge networks here), every
port moved off the machine's own services (MariaDB, PostgreSQL, Mosquitto on loopback) to free loopback ports,
builds on the host network (pip reaches PyPI), and webhooks allowed to the loopback receiver.  Secrets are random
per run (an --env-file, never compose/.env).  engine.py says where the engine, Compose v2 and the base images
come from.  Exit 0 when every variant passed; the last lines are the wall times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.compose_smoke.engine import (
    DEFAULT_STATE_DIR,
    ROOT,
    Docker,
    SmokeError,
    ensure_base_images,
    ensure_compose,
    ensure_engine,
    free_port,
    log,
    run,
)
from tests.compose_smoke.quickstart import WebhookReceiver, run_quickstart

VARIANTS = {"mysql": ROOT / "compose" / "compose.yaml", "postgres": ROOT / "compose" / "compose.postgres.yaml"}
DB_SERVICE = {"mysql": "mysql", "postgres": "postgres"}
UP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Ports:
    db: int
    mqtt: int
    chat: int
    chat_fallback: int
    media: int
    admin: int
    web: int
    webhook: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*(free_port() for _ in range(8)))


def _app_env(ports: Ports) -> str:
    """The `environment:` lines every OpenPrem service gets in the override (indented for the YAML below)."""
    values = {
        "WA_DB_HOSTNAME": "127.0.0.1",
        "WA_DB_PORT": ports.db,
        "WA_MQTT_HOSTNAME": "127.0.0.1",
        "WA_MQTT_PORT": ports.mqtt,
        "WA_CHAT_HOSTNAME": "127.0.0.1",
        "WA_CHAT_PORT": ports.chat,
        "WA_CHAT_FALLBACK_PORT": ports.chat_fallback,
        "WA_SANDBOX_HOSTNAME": "127.0.0.1",
        "WA_SANDBOX_PORT": ports.chat,
        "WA_SANDBOX_FALLBACK_PORT": ports.chat_fallback,
        "WA_SANDBOX_MEDIA_PORT": ports.media,
        "WA_SANDBOX_ADMIN_PORT": ports.admin,
        "WA_WEB_HOSTNAME": "127.0.0.1",
        "WA_WEB_PORT": ports.web,
        # The receiver is on loopback, over plain HTTP: only this override allows that (README "Docker compose").
        "WA_FETCH_ALLOW_LOOPBACK": "true",
        "WA_WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
    }
    return "".join(f'      {k}: "{v}"\n' for k, v in values.items())


def write_override(variant: str, ports: Ports, workdir: Path) -> Path:
    """The machine-only override: host networking, moved ports, builds on the host network."""
    mosquitto_conf = workdir / "mosquitto.conf"
    shipped = (ROOT / "conf" / "mosquitto.conf").read_text()
    if "listener 1883\n" not in shipped:
        raise SmokeError("conf/mosquitto.conf has no `listener 1883` line to move")
    mosquitto_conf.write_text(shipped.replace("listener 1883\n", f"listener {ports.mqtt} 127.0.0.1\n"))
    app_env = _app_env(ports)
    if variant == "mysql":
        db = (
            "  mysql:\n"
            "    network_mode: host\n"
            # mysqld and the mysql client both read MYSQL_TCP_PORT: the server and its health check move together.
            "    environment:\n"
            f'      MYSQL_TCP_PORT: "{ports.db}"\n'
            '    command: ["mysqld", "--default-authentication-plugin=mysql_native_password",'
            ' "--bind-address=127.0.0.1"]\n'
        )
    else:
        db = (
            "  postgres:\n"
            "    network_mode: host\n"
            # postgres, psql and pg_isready all read PGPORT.
            "    environment:\n"
            f'      PGPORT: "{ports.db}"\n'
            '    command: ["postgres", "-N", "500", "-c", "listen_addresses=127.0.0.1"]\n'
        )
    build = "    build:\n      network: host\n"
    text = (
        "# Written by tests/compose_smoke/run.py for one run on a machine without bridge networks.\n"
        "services:\n"
        f"{db}"
        "  mosquitto:\n"
        "    network_mode: host\n"
        "    volumes:\n"
        f"      - {mosquitto_conf}:/mosquitto/config/mosquitto.conf:ro\n"
        "    healthcheck:\n"
        "      test: [\"CMD-SHELL\", \"XDG_CONFIG_HOME=/mosquitto/auth mosquitto_sub -h 127.0.0.1 "
        f"-p {ports.mqtt} -t '$$SYS/broker/uptime' -C 1 -W 3\"]\n"
        "  chatd:\n"
        "    network_mode: host\n"
        f"{build}"
        "    environment:\n"
        f"{app_env}"
        "  coreapp:\n"
        "    network_mode: host\n"
        f"{build}"
        "    environment:\n"
        f"{app_env}"
        "  webapp:\n"
        "    network_mode: host\n"
        f"{build}"
        "    ports: !reset []\n"
        "    environment:\n"
        f"{app_env}"
    )
    path = workdir / "compose.smoke.yaml"
    path.write_text(text)
    return path


def write_env_file(workdir: Path) -> Path:
    path = workdir / "smoke.env"
    names = ("WA_DB_ROOT_PASSWORD", "WA_DB_PASSWORD", "WA_MQTT_WEBAPP_PASSWORD", "WA_MQTT_COREAPP_PASSWORD")
    path.write_text("".join(f"{name}={secrets.token_hex(24)}\n" for name in names))
    path.chmod(0o600)
    return path


@dataclass
class Result:
    variant: str
    up_s: float = 0.0
    quickstart_s: float = 0.0
    down_s: float = 0.0
    total_s: float = 0.0
    error: str = ""


def smoke_variant(docker: Docker, variant: str, keep: bool) -> Result:
    result = Result(variant)
    started = time.monotonic()
    project = f"openprem-smoke-{variant}"
    ports = Ports.pick()
    workdir = Path(tempfile.mkdtemp(prefix=f"compose-smoke-{variant}-"))
    try:
        override = write_override(variant, ports, workdir)
        env_file = write_env_file(workdir)
        compose = [*docker.compose, "--project-name", project, "--env-file", str(env_file),
                   "-f", str(VARIANTS[variant]), "-f", str(override)]
        env = {**docker.env, "COMPOSE_STATUS_STDOUT": "1"}
        try:
            run([*compose, "config", "--quiet"], env=env, timeout=60)
            # What an interrupted earlier run left (its volumes hold another admin password) goes first.
            run([*compose, "down", "--volumes", "--remove-orphans", "--timeout", "10"], env=env, timeout=300)
            log(f"{variant}: up --build --wait ({VARIANTS[variant].relative_to(ROOT)}; API on 127.0.0.1:{ports.web})")
            t = time.monotonic()
            up = subprocess.run(
                [*compose, "up", "--build", "--detach", "--wait", "--wait-timeout", str(UP_TIMEOUT_S)],
                env=env, timeout=UP_TIMEOUT_S + 120, check=False,
            )
            result.up_s = time.monotonic() - t
            if up.returncode != 0:
                raise SmokeError(f"up --wait exited {up.returncode} after {result.up_s:.0f} s")
            log(f"{variant}: every service healthy after {result.up_s:.0f} s")
            t = time.monotonic()
            receiver = WebhookReceiver(ports.webhook)
            sandbox = [*compose, "exec", "-T", "chatd", "python", "-m", "chatd"]

            async def quickstart() -> None:
                await receiver.start()
                try:
                    await run_quickstart(f"https://127.0.0.1:{ports.web}/v1", sandbox, env, receiver)
                finally:
                    await receiver.stop()

            asyncio.run(quickstart())
            result.quickstart_s = time.monotonic() - t
        except Exception as exc:  # any failure of this variant: reported, its logs shown, the stack taken down
            result.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SmokeError) else str(exc)
            log(f"{variant}: FAILED: {exc}")
            subprocess.run([*compose, "ps", "--all"], env=env, check=False, timeout=60)
            subprocess.run([*compose, "logs", "--no-color", "--tail", "60"], env=env, check=False, timeout=120)
        finally:
            if keep:
                log(f"{variant}: --keep: left running; stop with: DOCKER_HOST={env.get('DOCKER_HOST', '')} "
                    f"{' '.join(compose)} down --volumes")
            else:
                t = time.monotonic()
                run([*compose, "down", "--volumes", "--remove-orphans", "--timeout", "30"], env=env, check=False,
                    timeout=300)
                result.down_s = time.monotonic() - t
    finally:
        if not keep:  # --keep keeps the override and the env file too: `down` needs them
            shutil.rmtree(workdir, ignore_errors=True)
    result.total_s = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.compose_smoke.run", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=("all", *VARIANTS), default="all")
    parser.add_argument("--keep", action="store_true", help="leave the stack running (no down)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="our engine's data root, the stand-in base's rootfs and Compose v2 (kept between runs)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        env = ensure_engine(args.state_dir)
        docker = Docker(env, ensure_compose(env, args.state_dir))
        log(f"engine {env.get('DOCKER_HOST', '(default)')}; compose: {' '.join(docker.compose)}")
        t = time.monotonic()
        standins = ensure_base_images(docker, args.state_dir)
        base_s = time.monotonic() - t
    except (SmokeError, subprocess.TimeoutExpired, OSError) as exc:
        log(f"FAILED before any stack: {exc}")
        return 1
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    results = [smoke_variant(docker, v, args.keep) for v in variants]
    # The engine's disk stays bounded across runs: the images earlier builds left untagged, and build cache unused
    # for a week (what a run needs again is younger).
    docker.docker("image", "prune", "--force", check=False, timeout=300)
    docker.docker("builder", "prune", "--force", "--filter", "until=168h", check=False, timeout=300)
    total = time.monotonic() - started
    log(f"base images {base_s:.0f} s" + (f" (stand-ins: {', '.join(standins)})" if standins else ""))
    for r in results:
        state = "passed" if not r.error else f"FAILED ({r.error[:200]})"
        log(f"{r.variant}: {state}; up+build+healthy {r.up_s:.0f} s, quick start {r.quickstart_s:.0f} s, "
            f"down {r.down_s:.0f} s, {r.total_s:.0f} s in all")
    failed = sum(1 for r in results if r.error)
    log(f"wall time {total:.0f} s")
    print(f"compose-smoke: {len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
