"""Alembic environment of the test migration tree: the same three lines every app's env.py has."""

from shared.db.migrate import run_env

run_env()
