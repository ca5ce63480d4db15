"""The HTTPS certificate: the operator's (``WA_WEB_CERT_FILE``/``WA_WEB_KEY_FILE``) or a self-signed one.

Like the original webapp, a fresh install serves HTTPS at once with its own certificate.  It is generated
once under ``<data_dir>/web/`` (for ``WA_WEB_SERVERNAME``, ``localhost`` and ``127.0.0.1``) and reused after,
so clients that pinned it keep working across restarts.  An ``flock`` keeps two webapps sharing the data
volume from writing a mismatched key and certificate.  A certificate uploaded through
``/v1/certificates/external`` (``webapp.certs``) is kept beside it and wins over the self-signed one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.config import WebSettings
from shared.private_files import make_private_dirs

log = logging.getLogger("openprem.webapp.tls")

CERT_FILE = "server.crt"
KEY_FILE = "server.key"
EXTERNAL_CERT_FILE = "external.crt"
EXTERNAL_KEY_FILE = "external.key"
VALIDITY_DAYS = 3650


def ensure_certificate(web: WebSettings, data_dir: Path) -> tuple[Path, Path]:
    """``(cert, key)`` paths: the configured pair, the uploaded pair, or the self-signed pair (made on first use)."""
    if web.cert_file is not None or web.key_file is not None:
        if web.cert_file is None or web.key_file is None:
            raise ValueError("set both WA_WEB_CERT_FILE and WA_WEB_KEY_FILE, or neither")
        return web.cert_file, web.key_file
    directory = data_dir / "web"
    make_private_dirs(directory)  # 0700: it holds the private key
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    with locked(directory):
        external = directory / EXTERNAL_CERT_FILE, directory / EXTERNAL_KEY_FILE
        if external[0].exists() and external[1].exists():
            return external
        if not (cert.exists() and key.exists()):
            _generate(web.server_name, cert, key)
            log.info("generated a self-signed certificate for %s at %s", web.server_name, cert)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Exclusive across processes sharing ``directory`` (webapps on one data volume)."""
    fd = os.open(directory / ".tls.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _generate(server_name: str, cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)])
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([server_name, "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(key_path, key_pem, 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
