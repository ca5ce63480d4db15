"""chatd's certificate authority: the TLS server certificate coreapp trusts, and verified-name certificates.

Created once in the data directory and reused, so a client configured with ``ca.pem`` keeps trusting chatd
across restarts.  Files: ``ca.key``/``ca.pem`` (EC P-256 root), ``server.key``/``server.pem`` (for
``server_name``, ``localhost`` and ``127.0.0.1``; reissued when the name changes or expiry nears) and
``vname.key`` (Ed25519, signs verified-name certificates).

Verified-name certificate format (what ``POST /admin/certificates`` returns and ``RegisterRequest.cert``
carries): standard base64 of a UTF-8 JSON object ::

    {"details": "<base64 of the details JSON>", "signature": "<base64 Ed25519 signature of those bytes>"}

where the details JSON is ``{"v": 1, "serial": "<hex>", "issuer": "openprem-chatd", "cc": "1",
"phone_number": "2025550100", "vname": "OpenPrem Demo", "issued_at": <epoch s>}``.  Like the original's
protobuf certificate it is "details + signature over the exact detail bytes", so it cannot be edited.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import json
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

ISSUER = "openprem-chatd"
_RENEW_BEFORE = dt.timedelta(days=30)


class CertError(Exception):
    """A verified-name certificate that is malformed, forged or not ours."""


@dataclass(frozen=True, slots=True)
class VnameCert:
    cc: str
    phone_number: str
    vname: str
    serial: str


class CertificateAuthority:
    """Holds the CA, server and vname keys; build it with ``load_or_create`` (blocking: run in a thread)."""

    def __init__(self, directory: Path, vname_key: Ed25519PrivateKey) -> None:
        self._dir = directory
        self._vname_key = vname_key

    @property
    def ca_file(self) -> Path:
        return self._dir / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self._dir / "server.pem"

    @property
    def key_file(self) -> Path:
        return self._dir / "server.key"

    @classmethod
    def load_or_create(cls, directory: Path, server_name: str) -> CertificateAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        ca_key, ca_cert = _load_or_create_ca(directory)
        _ensure_server_cert(directory, server_name, ca_key, ca_cert)
        vname_path = directory / "vname.key"
        if vname_path.exists():
            loaded = serialization.load_pem_private_key(vname_path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise CertError(f"{vname_path} is not an Ed25519 key")
            vname_key = loaded
        else:
            vname_key = Ed25519PrivateKey.generate()
            _write_private(vname_path, vname_key)
        return cls(directory, vname_key)

    def server_ssl_context(self) -> ssl.SSLContext:
        """TLS 1.3 only, as the wire contract says."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def issue_vname(self, cc: str, phone_number: str, vname: str, issued_at: int) -> str:
        details = {
            "v": 1,
            "serial": secrets.token_hex(8),
            "issuer": ISSUER,
            "cc": cc,
            "phone_number": phone_number,
            "vname": vname,
            "issued_at": issued_at,
        }
        raw = json.dumps(details, separators=(",", ":"), sort_keys=True).encode()
        outer = {"details": _b64(raw), "signature": _b64(self._vname_key.sign(raw))}
        return _b64(json.dumps(outer, separators=(",", ":")).encode())

    def verify_vname(self, cert: str) -> VnameCert:
        """The certified details, or ``CertError`` saying what is wrong."""
        try:
            outer = json.loads(base64.b64decode(cert, validate=True))
            raw = base64.b64decode(outer["details"], validate=True)
            signature = base64.b64decode(outer["signature"], validate=True)
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise CertError("certificate is not valid base64-encoded certificate JSON") from exc
        try:
            self._vname_key.public_key().verify(signature, raw)
        except InvalidSignature as exc:
            raise CertError("certificate signature is invalid (not issued by this network)") from exc
        try:
            details = json.loads(raw)
            return VnameCert(
                cc=str(details["cc"]),
                phone_number=str(details["phone_number"]),
                vname=str(details["vname"]),
                serial=str(details["serial"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CertError("certificate details are incomplete") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _load_or_create_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_path, cert_path = directory / "ca.key", directory / "ca.pem"
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertError(f"{key_path} is not an EC key")
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenPrem chatd sandbox CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _ensure_server_cert(
    directory: Path, server_name: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> None:
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    names = [server_name, "localhost"]
    if cert_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        sans = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        fresh = current.not_valid_after_utc - dt.datetime.now(dt.UTC) > _RENEW_BEFORE
        if fresh and set(names) <= set(sans.get_values_for_type(x509.DNSName)):
            return
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [*(x509.DNSName(n) for n in dict.fromkeys(names)), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
