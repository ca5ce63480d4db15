"""Secrets at rest: the in-process chatd + CoreApp harness of ``tests/coreapp``."""

from tests.coreapp.conftest import make_core, sandbox, sqlite_db  # noqa: F401  (fixtures)
