"""Alembic environment for coreapp's tables (version table ``alembic_version_coreapp``); see shared.db.migrate."""

from shared.db.migrate import run_env

run_env()
