"""Run the floor server (``bench.floor``) as its own process and drive it with the benchmark's client."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench import load
from bench.dbstats import mariadb_counters, per_message
from bench.deploy import bench_env, wait_http
from bench.procstat import Watch, fixed, pidof
from bench.stats import api_summary, cpu_per_1k
from tests.e2e.harness import Proc
from tests.support.ports import free_port
from tests.support.services import mariadb_server


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A throw-away P-256 certificate for 127.0.0.1 (webapp also serves a self-signed one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-floor")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    workdir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = workdir / "floor-cert.pem", workdir / "floor-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def run_floor(workdir: Path, messages: int, concurrency: int, recipients: list[str]) -> dict[str, Any]:
    """Warm up, then ``messages`` requests at ``concurrency``: API summary and CPU per 1,000 requests."""
    cert, key = await asyncio.to_thread(self_signed, workdir)
    host, port, user, password = mariadb_server()
    web_port = free_port()
    argv = [sys.executable, "-m", "bench.floor", "--port", str(web_port), "--cert", str(cert), "--key", str(key)]
    argv += ["--db-host", host, "--db-port", str(port), "--db-user", user, "--db-password", password]
    argv += ["--database", f"bench_floor_{os.getpid()}"]
    proc = Proc("floor", argv, bench_env(), workdir / "floor.out")
    proc.start()
    url = f"https://127.0.0.1:{web_port}"
    try:
        await wait_http(url + "/", "the floor server", proc, ok=(404, 405))
        watch = Watch()
        watch.add("floor", fixed(proc.popen.pid if proc.popen else None))
        watch.add("mariadbd", lambda: pidof("mariadbd", "mysqld"), shared=True)
        watch.add("bench client", fixed(os.getpid()))
        await load.closed(url, "bench", recipients, min(messages, 1000), concurrency)
        counters = await mariadb_counters()
        before = watch.cpu()
        samples = await load.closed(url, "bench", recipients, messages, concurrency)
        cpu = Watch.cpu_delta(before, watch.cpu())
        statements = per_message(counters, await mariadb_counters(), len(samples))
        return {
            "api": api_summary(samples),
            "cpu_s_per_1k": cpu_per_1k(cpu, len(samples)),
            "db_statements_per_msg": statements,
            "peak_rss_mib": {k: round(v, 1) for k, v in watch.peak_mib().items()},
        }
    finally:
        proc.stop()
