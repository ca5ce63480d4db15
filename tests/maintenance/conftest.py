"""Maintenance tests run coreapp against the in-process chatd, like tests/coreapp (same fixtures)."""

from tests.coreapp.conftest import make_core, sandbox, sqlite_db

__all__ = ["make_core", "sandbox", "sqlite_db"]
