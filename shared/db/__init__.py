"""Database access: one engine per process, named retried transactions, locked migrations, portable types."""

from shared.db.engine import Database, drop_database, ensure_database, is_retryable
from shared.db.migrate import MigrationLockTimeout, migrate, run_env
from shared.db.types import LongBinary, LongText, UtcDateTime, upsert

__all__ = [
    "Database",
    "LongBinary",
    "LongText",
    "MigrationLockTimeout",
    "UtcDateTime",
    "drop_database",
    "ensure_database",
    "is_retryable",
    "migrate",
    "run_env",
    "upsert",
]
