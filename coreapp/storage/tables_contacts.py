"""The ``contacts`` table: the cache behind ``POST /v1/contacts`` (created by migration 0002)."""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table

from shared.db.types import UtcDateTime

metadata = MetaData()

contacts = Table(
    "contacts",
    metadata,
    # E.164 digits without "+"; wa_id is NULL when the network said the number is not a WhatsApp user.
    Column("number", String(32), primary_key=True),
    Column("wa_id", String(32), nullable=True),
    Column("checked_at", UtcDateTime, nullable=False),
    Index("ix_contacts_checked_at", "checked_at"),
)
