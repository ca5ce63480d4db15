"""The self-signed certificate and the JWT key are created once, private, and reused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.config import WebSettings
from webapp.auth import check_password_rule, load_jwt_key
from webapp.tls import ensure_certificate


def test_certificate_generated_once_and_reused(tmp_path: Path):
    settings = WebSettings(server_name="api.example.com")
    cert, key = ensure_certificate(settings, tmp_path)
    first = cert.read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert ensure_certificate(settings, tmp_path) == (cert, key)
    assert cert.read_bytes() == first

    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(first)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"api.example.com", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_configured_certificate_wins(tmp_path: Path):
    mine = WebSettings(cert_file=tmp_path / "c.pem", key_file=tmp_path / "k.pem")
    assert ensure_certificate(mine, tmp_path) == (tmp_path / "c.pem", tmp_path / "k.pem")
    with pytest.raises(ValueError):
        ensure_certificate(WebSettings(cert_file=tmp_path / "c.pem"), tmp_path)


def test_jwt_key_persisted_private_and_stable(tmp_path: Path):
    key = load_jwt_key(WebSettings(), tmp_path)
    path = tmp_path / "web" / "jwt.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_jwt_key(WebSettings(), tmp_path) == key
    configured = load_jwt_key(WebSettings(jwt_crypto_key="shared-by-every-webapp-0123456789"), tmp_path)
    assert configured != key and len(configured) == 32


@pytest.mark.parametrize("password", ["Abcdef1!", "Ab1" + "~" * 61, "Пароль-1a"])
def test_password_rule_accepts(password: str):
    check_password_rule(password)
