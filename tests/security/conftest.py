"""The coreapp fixtures (an in-process chatd, a real CoreApp) for the attack tests."""

from __future__ import annotations

from tests.coreapp.conftest import make_core, sandbox, sqlite_db

__all__ = ["make_core", "sandbox", "sqlite_db"]
