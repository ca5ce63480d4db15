"""shared.config: env-file parsing, precedence, error reporting by variable name, URL encoding."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from shared.config import ConfigError, DbEngine, DbSettings, Settings, load_settings, read_env_file

PASSWORD = "?{}&~!()^@:/#%"


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "whatsapp.conf"
    path.write_text(
        "# comment\n"
        "\n"
        "WA_DB_ENGINE=PGSQL\n"
        "  WA_DB_HOSTNAME = db.example \n"
        'WA_DB_PASSWORD="quoted value"\n'
        "WA_DB_USERNAME='single'\n"
        'WA_WEB_SERVERNAME="half\n'
        "WA_DB_NAME_PREFIX=\n"
        "WA_LOG_LEVEL=a=b\n",
        encoding="utf-8",
    )
    assert read_env_file(path) == {
        "WA_DB_ENGINE": "PGSQL",
        "WA_DB_HOSTNAME": "db.example",
        "WA_DB_PASSWORD": "quoted value",
        "WA_DB_USERNAME": "single",
        "WA_WEB_SERVERNAME": '"half',  # verbatim, like docker: only a matching pair is stripped
        "WA_DB_NAME_PREFIX": "",
        "WA_LOG_LEVEL": "a=b",  # split on the first '=' only
    }


def test_env_file_rejects_lines_without_equals(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("WA_DB_ENGINE=MYSQL\nnot a setting\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.conf:2"):
        read_env_file(path)


def test_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "whatsapp.conf"
    path.write_text("WA_DB_ENGINE=MYSQL\nWA_DB_PORT=3307\nWA_DB_USERNAME=fromfile\n", encoding="utf-8")
    settings = load_settings(
        env={"WA_DB_PORT": "3308", "WA_DB_USERNAME": "fromenv", "UNRELATED": "x"},
        env_file=path,
        overrides={"WA_DB_USERNAME": "override"},
    )
    assert settings.db.engine is DbEngine.MYSQL
    assert settings.db.port == 3308
    assert settings.db.username == "override"


def test_empty_value_means_default() -> None:
    settings = load_settings(env={"WA_DB_PORT": "", "WA_DB_ENGINE": ""})
    assert settings.db.engine is DbEngine.SQLITE
    assert settings.db.port is None
    assert settings.db.effective_port == 3306


def test_missing_env_file_is_ignored(tmp_path: Path) -> None:
    assert load_settings(env={}, env_file=tmp_path / "absent.conf").db.engine is DbEngine.SQLITE


def test_every_invalid_value_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={
                "WA_DB_ENGINE": "ORACLE",
                "WA_DB_PORT": "abc",
                "WA_DB_NAME_PREFIX": "bad-prefix",
                "WA_LOG_LEVEL": "LOUD",
                "WA_MQTT_PORT": "70000",
            }
        )
    message = str(info.value)
    for name in ("WA_DB_ENGINE", "WA_DB_PORT", "WA_DB_NAME_PREFIX", "WA_LOG_LEVEL", "WA_MQTT_PORT"):
        assert name in message
    assert message.startswith("invalid configuration: ")


def test_server_engine_requires_hostname() -> None:
    # Through load_settings an empty WA_DB_HOSTNAME means "default", so the rule guards programmatic settings.
    with pytest.raises(ValueError, match="WA_DB_HOSTNAME"):
        Settings(db=DbSettings(engine=DbEngine.MYSQL, hostname=""))


def test_database_name_uses_prefix() -> None:
    assert load_settings(env={"WA_DB_NAME_PREFIX": "prod_"}).db.database == "prod_openprem"
    assert DbSettings().database == "openprem"


@pytest.mark.parametrize(
    ("engine", "driver", "port"), [("MYSQL", "mysql+asyncmy", 3306), ("PGSQL", "postgresql+psycopg", 5432)]
)
def test_password_with_every_special_character_round_trips(engine: str, driver: str, port: int) -> None:
    settings = load_settings(
        env={"WA_DB_ENGINE": engine, "WA_DB_USERNAME": "us@r:/", "WA_DB_PASSWORD": PASSWORD, "WA_DB_NAME_PREFIX": "p_"}
    )
    url = make_url(settings.db.url())
    assert url.drivername == driver
    assert url.username == "us@r:/"
    assert url.password == PASSWORD
    assert (url.host, url.port, url.database) == ("127.0.0.1", port, "p_openprem")
    assert PASSWORD not in settings.db.url()  # encoded, not raw


def test_password_via_env_file_keeps_special_characters(tmp_path: Path) -> None:
    path = tmp_path / "whatsapp.conf"
    path.write_text(f"WA_DB_ENGINE=MYSQL\nWA_DB_PASSWORD={PASSWORD}\n", encoding="utf-8")
    settings = load_settings(env={}, env_file=path)
    assert settings.db.password == PASSWORD
    assert make_url(settings.db.url()).password == PASSWORD


def test_sqlite_url() -> None:
    settings = load_settings(env={"WA_DB_SQLITE_PATH": "/tmp/x/openprem.db"})
    url = make_url(settings.db.url())
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == "/tmp/x/openprem.db"


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValueError):
        settings.db.password = "x"  # type: ignore[misc]


def test_secrets_stay_out_of_repr() -> None:
    from shared.config import DbSettings, WebSettings

    shown = repr(DbSettings(password="db-secret-value")) + repr(WebSettings(jwt_crypto_key="jwt-secret-value" * 3))
    assert "db-secret-value" not in shown and "jwt-secret-value" not in shown
