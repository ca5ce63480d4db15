"""Security tests reuse the webapp fixtures (a real WebApp over HTTPS, a fake coreapp behind LocalBus), the coreapp
ones (a real coreapp against the in-process sandbox), the webhook ones (outbox tables, a loopback receiver) and
the live stack of tests/contract (real WebApp + CoreApp)."""

from tests.contract.conftest import live
from tests.coreapp.conftest import make_core, sandbox, sqlite_db
from tests.coreapp_webhooks.conftest import db, receiver, settings_store, store
from tests.webapp.conftest import admin, api, app_db, core, web_options, webapp

__all__ = [
    "admin",
    "api",
    "app_db",
    "core",
    "db",
    "live",
    "make_core",
    "receiver",
    "sandbox",
    "settings_store",
    "sqlite_db",
    "store",
    "web_options",
    "webapp",
]
