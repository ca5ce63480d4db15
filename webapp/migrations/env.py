"""Alembic environment for the webapp tree: ``shared.db.migrate.migrate`` supplies connection and lock."""

from shared.db.migrate import run_env
from webapp.storage import metadata

run_env(metadata)
