"""All webapp SQL: API users, their bearer tokens and media upload keys (DESIGN §11.2: SQL only in storage modules).

Tables carry a ``web_`` prefix because webapp and coreapp share one database; the prefix keeps the two
Alembic trees from ever fighting over a name.  Tokens are stored as a SHA-256 hash next to their ``jti`` so a
database leak does not hand out usable bearer tokens.  ``web_media_idempotency`` remembers the media id a keyed
upload stored (``shared.idempotency``), for 24 hours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, Index, MetaData, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.engine import Database
from shared.db.types import UtcDateTime, upsert

metadata = MetaData()

users = Table(
    "web_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("must_change_password", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

tokens = Table(
    "web_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("token_sha256", String(64), nullable=False),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Index("ix_web_tokens_username", "username"),
    Index("ix_web_tokens_expires_at", "expires_at"),
)


media_keys = Table(
    "web_media_idempotency",
    metadata,
    Column("key_sha256", String(64), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("media_id", String(36), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_web_media_idempotency_created_at", "created_at"),
)

KEY_RACE_ATTEMPTS = 3
"""Runs of ``claim_media_key`` when another webapp stores the same key at the same moment."""


class Role(enum.StrEnum):
    """On-Prem roles: only ``admin`` is ROLE_ADMIN (reference §2.2)."""

    ADMIN = "ROLE_ADMIN"
    USER = "ROLE_USER"


@dataclass(frozen=True)
class UserRow:
    username: str
    password_hash: str
    role: Role
    must_change_password: bool


@dataclass(frozen=True)
class TokenRow:
    jti: str
    username: str
    token_sha256: str
    expires_at: datetime
    revoked: bool


@dataclass(frozen=True)
class MediaKey:
    """An upload's ``Idempotency-Key`` (its SHA-256), the fingerprint of what was uploaded and the media id."""

    key_sha256: str
    request_sha256: str
    media_id: str


def _now() -> datetime:
    return datetime.now(UTC)


class WebStorage:
    """Named transactions over ``web_users`` and ``web_tokens``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # users -------------------------------------------------------------------------------------------------
    async def get_user(self, username: str) -> UserRow | None:
        async def txn(conn: AsyncConnection) -> UserRow | None:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
            if row is None:
                return None
            return UserRow(row.username, row.password_hash, Role(row.role), bool(row.must_change_password))

        return await self._db.run("web.get_user", txn)

    async def ensure_user(self, username: str, password_hash: str, role: Role, must_change_password: bool) -> None:
        """Create the user unless it exists (safe when several webapps start at once)."""
        now = _now()
        values = {
            "username": username,
            "password_hash": password_hash,
            "role": role.value,
            "must_change_password": must_change_password,
            "created_at": now,
            "updated_at": now,
        }

        async def txn(conn: AsyncConnection) -> None:
            await upsert(conn, users, values, key=["username"], update=[])

        await self._db.run("web.ensure_user", txn)

    async def create_user(self, username: str, password_hash: str, role: Role, must_change_password: bool) -> bool:
        """Insert a new user; False when the name is taken."""
        now = _now()

        async def txn(conn: AsyncConnection) -> bool:
            exists = await conn.scalar(select(users.c.username).where(users.c.username == username))
            if exists is not None:
                return False
            await conn.execute(
                users.insert().values(
                    username=username,
                    password_hash=password_hash,
                    role=role.value,
                    must_change_password=must_change_password,
                    created_at=now,
                    updated_at=now,
                )
            )
            return True

        return await self._db.run("web.create_user", txn)

    async def set_password(self, username: str, password_hash: str, *, keep_token: str | None) -> bool:
        """Store a new hash, clear the must-change flag and revoke every token of the user but ``keep_token`` (a
        ``jti``), in one transaction so no old session outlives the change; False when the user is gone."""

        async def txn(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(users)
                .where(users.c.username == username)
                .values(password_hash=password_hash, must_change_password=False, updated_at=_now())
            )
            if not result.rowcount:
                return False
            revoke = update(tokens).where(tokens.c.username == username, tokens.c.revoked.is_(False))
            if keep_token is not None:
                revoke = revoke.where(tokens.c.jti != keep_token)
            await conn.execute(revoke.values(revoked=True))
            return True

        return await self._db.run("web.set_password", txn)

    async def delete_user(self, username: str) -> bool:
        """Delete a user and every token it holds."""

        async def txn(conn: AsyncConnection) -> bool:
            await conn.execute(delete(tokens).where(tokens.c.username == username))
            result = await conn.execute(delete(users).where(users.c.username == username))
            return bool(result.rowcount)

        return await self._db.run("web.delete_user", txn)

    # tokens ------------------------------------------------------------------------------------------------
    async def add_token(
        self, jti: str, username: str, token_sha256: str, issued_at: datetime, expires_at: datetime
    ) -> None:
        async def txn(conn: AsyncConnection) -> None:
            await conn.execute(
                tokens.insert().values(
                    jti=jti,
                    username=username,
                    token_sha256=token_sha256,
                    issued_at=issued_at,
                    expires_at=expires_at,
                    revoked=False,
                )
            )

        await self._db.run("web.add_token", txn)

    async def get_token(self, jti: str) -> tuple[TokenRow, Role] | None:
        """The token row and its user's role; None when either is gone."""

        async def txn(conn: AsyncConnection) -> tuple[TokenRow, Role] | None:
            stmt = (
                select(tokens, users.c.role)
                .join(users, users.c.username == tokens.c.username)
                .where(tokens.c.jti == jti)
            )
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            token = TokenRow(row.jti, row.username, row.token_sha256, row.expires_at, bool(row.revoked))
            return token, Role(row.role)

        return await self._db.run("web.get_token", txn)

    async def revoke_user_tokens(self, username: str) -> int:
        async def txn(conn: AsyncConnection) -> int:
            result = await conn.execute(
                update(tokens).where(tokens.c.username == username, tokens.c.revoked.is_(False)).values(revoked=True)
            )
            return int(result.rowcount or 0)

        return await self._db.run("web.revoke_user_tokens", txn)

    async def purge_expired_tokens(self, before: datetime | None = None) -> int:
        """Drop tokens past their expiry; they can never authenticate again."""
        cutoff = before or _now()

        async def txn(conn: AsyncConnection) -> int:
            result = await conn.execute(delete(tokens).where(tokens.c.expires_at < cutoff))
            return int(result.rowcount or 0)

        return await self._db.run("web.purge_expired_tokens", txn)

    # media upload keys -------------------------------------------------------------------------------------
    async def claim_media_key(self, claim: MediaKey, since: datetime) -> MediaKey:
        """Store ``claim`` unless its key is on record since ``since``; the record that holds (``claim`` itself
        or the earlier one).  An older record of the key is replaced; a racing insert is read back."""

        async def txn(conn: AsyncConnection) -> MediaKey:
            key = media_keys.c.key_sha256 == claim.key_sha256
            await conn.execute(delete(media_keys).where(key, media_keys.c.created_at < since))
            row = (await conn.execute(select(media_keys).where(key))).first()
            if row is not None:
                return MediaKey(row.key_sha256, row.request_sha256, row.media_id)
            await conn.execute(
                media_keys.insert().values(
                    key_sha256=claim.key_sha256,
                    request_sha256=claim.request_sha256,
                    media_id=claim.media_id,
                    created_at=_now(),
                )
            )
            return claim

        for attempt in range(1, KEY_RACE_ATTEMPTS + 1):
            try:
                return await self._db.run("web.claim_media_key", txn)
            except IntegrityError:
                if attempt == KEY_RACE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def purge_media_keys(self, before: datetime) -> int:
        """Drop upload keys stored before ``before``: they no longer count."""

        async def txn(conn: AsyncConnection) -> int:
            result = await conn.execute(delete(media_keys).where(media_keys.c.created_at < before))
            return int(result.rowcount or 0)

        return await self._db.run("web.purge_media_keys", txn)
