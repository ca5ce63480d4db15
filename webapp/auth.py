"""Users and bearer tokens: argon2 passwords, HS256 JWTs that the database can revoke.

A token is a JWT (``sub``, ``iat``, ``exp``, ``jti``) so it looks like the original's and every webapp sharing
``WA_WEB_JWT_CRYPTO_KEY`` accepts it; it is also a row (``jti`` + SHA-256 of the token) so logout revokes it at
once.  Each webapp reuses its check of a token for ``WA_WEB_TOKEN_CACHE_TTL`` seconds, so a token revoked
through one webapp is refused by the others within that bound (by the one that revoked it at once).
Argon2 runs in a worker thread (≈100 ms per hash) so logins never stall the event loop, behind
``login_guard.HashGate`` (a bounded number at once) and ``login_guard.LoginThrottle`` (wrong-password limits).

Every password change revokes the user's other tokens (the original kept them, reference §2.2): changing
one's own password keeps the token used for the change; a change at login or by ROLE_ADMIN leaves only the
token issued afterwards, if any.  Changing one's own password needs ``current_password``, so a stolen token
alone cannot take the account over.

``/v1/health``, ``/v1/stats/*`` and ``/metrics`` also take ``Authorization: Apikey <key>`` (reference §2.0), for
Prometheus scrapers and monitors: one opaque key from ``WA_WEB_API_KEY``, of which only the SHA-256 is held
(``WebSettings.api_key_sha256``) and compared in constant time.  It names no user, so those routes get no
``Principal``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from shared.config import JWT_KEY_MIN_BYTES, ConfigError, WebSettings
from shared.errors import ApiError, ErrorCode
from shared.private_files import make_private_dirs
from webapp.envelope import HttpApiError
from webapp.login_guard import HashGate, LoginThrottle
from webapp.schemas.users import USERNAME_PATTERN
from webapp.storage import Role, UserRow, WebStorage

log = logging.getLogger("openprem.webapp.auth")

DEFAULT_ADMIN = "admin"
DEFAULT_ADMIN_PASSWORD = "secret"
SPECIAL_CHARACTERS = frozenset(string.punctuation)  # !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~ (reference §2.2)
CACHE_MAX_ENTRIES = 10_000
JWT_KEY_FILE = "jwt.key"
_USERNAME = re.compile(USERNAME_PATTERN)
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="WhatsApp"'}
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="WhatsApp"'}
API_KEY_SCHEME = "apikey"
API_KEY_ROUTES = frozenset({"/v1/health", "/v1/stats/app", "/v1/stats/db", "/metrics"})
"""The GET routes (route templates) that also accept ``Authorization: Apikey <key>``; every other route answers that
header as it answers any non-bearer credentials (401, 1005)."""


@dataclass(frozen=True)
class Principal:
    """Who made the request."""

    username: str
    role: Role
    token_id: str | None = None
    """The ``jti`` of the bearer token the request came with (kept when the user changes its password)."""

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime

    @property
    def expires_after(self) -> str:
        """The original's format: ``2018-03-01 15:29:26+00:00``."""
        return self.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


def unauthorized(details: str, *, basic: bool = False) -> HttpApiError:
    """1005 with HTTP 401: the credentials, not the permissions, are wrong."""
    challenge = _BASIC_CHALLENGE if basic else _BEARER_CHALLENGE
    return HttpApiError(ErrorCode.ACCESS_DENIED, details, status=401, headers=challenge)


def check_password_rule(password: str) -> None:
    """8 to 64 characters with an upper-case letter, a lower-case letter, a digit and a special character."""
    problems = []
    if not 8 <= len(password) <= 64:
        problems.append("be 8 to 64 characters long")
    if not any(c.isupper() for c in password):
        problems.append("contain an upper-case letter")
    if not any(c.islower() for c in password):
        problems.append("contain a lower-case letter")
    if not any(c.isdigit() for c in password):
        problems.append("contain a digit")
    if not any(c in SPECIAL_CHARACTERS for c in password):
        problems.append("contain a special character from " + string.punctuation)
    if problems:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "password must " + ", ".join(problems))


def check_new_password(current: str, new: str) -> None:
    """The password rule, and a change that changes something."""
    check_password_rule(new)
    if hmac.compare_digest(current.encode("utf-8"), new.encode("utf-8")):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "the new password must differ from the current one")


def parse_basic(header: str | None) -> tuple[str, str]:
    if not header:
        raise unauthorized("missing Basic credentials", basic=True)
    scheme, _, encoded = header.strip().partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        raise unauthorized("malformed Basic credentials", basic=True) from None
    if not sep:
        raise unauthorized("malformed Basic credentials", basic=True)
    return username, password


def parse_bearer(header: str | None) -> str:
    """The token from ``Authorization: Bearer <token>`` (never from the query string)."""
    if not header:
        raise unauthorized("missing bearer token")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise unauthorized("expected 'Authorization: Bearer <token>'")
    return token


def api_key_of(header: str | None) -> str | None:
    """The key of ``Authorization: Apikey <key>`` (scheme case-insensitive); ``None`` for any other header."""
    if not header:
        return None
    scheme, _, key = header.strip().partition(" ")
    return key.strip() if scheme.lower() == API_KEY_SCHEME else None


def check_api_key(expected_sha256: bytes | None, key: str) -> None:
    """401 (1005) unless API keys are on and ``key`` is the configured one (SHA-256 digests, constant time).

    Off and wrong answer alike, so a caller cannot tell which; the key is never logged.
    """
    digest = hashlib.sha256(key.encode("ascii")).digest() if key.isascii() else b""
    if expected_sha256 is None or not hmac.compare_digest(digest, expected_sha256):
        raise unauthorized("invalid API key")


def load_jwt_key(web_settings: WebSettings, data_dir: Path) -> bytes:
    """The HMAC key: ``WA_WEB_JWT_CRYPTO_KEY``, or a random one created once under ``data_dir/web`` (0600).

    Either must be at least 32 bytes (``ConfigError`` otherwise: one CRITICAL line at start), since a short HS256
    key falls to an offline search from a single token.  The string is then hashed through SHA-256, so every
    webapp derives the same 32 bytes from the same setting.
    """
    secret = web_settings.jwt_crypto_key
    problem = f"WA_WEB_JWT_CRYPTO_KEY must be at least {JWT_KEY_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`)"
    if not secret:
        path = data_dir / "web" / JWT_KEY_FILE
        secret = _read_or_create_secret(path)
        problem = (
            f"the JWT key file {path} holds fewer than {JWT_KEY_MIN_BYTES} bytes: delete it to have a new one "
            f"generated, or set WA_WEB_JWT_CRYPTO_KEY (e.g. `openssl rand -hex 32`)"
        )
    if len(secret.encode("utf-8")) < JWT_KEY_MIN_BYTES:
        raise ConfigError(problem)
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _read_or_create_secret(path: Path) -> str:
    make_private_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process may be writing it right now: give it a moment to finish.
        for _ in range(50):
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value
            time.sleep(0.02)
        raise RuntimeError(f"{path} exists but is empty; delete it to generate a new JWT key") from None
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    log.info("generated a JWT signing key at %s (set WA_WEB_JWT_CRYPTO_KEY to share one across webapps)", path)
    return value


class Authenticator:
    """Login, bearer checks and logout over ``WebStorage``."""

    def __init__(self, storage: WebStorage, jwt_key: bytes, settings: WebSettings, hasher: PasswordHasher) -> None:
        self._storage = storage
        self._key = jwt_key
        self._ttl = timedelta(seconds=settings.token_ttl_s)
        self._cache_ttl_s = settings.token_cache_ttl_s
        self._hasher = hasher
        self._hashes = HashGate(settings.password_hash_concurrency, settings.password_hash_queue)
        self._throttle = LoginThrottle(settings)
        self._dummy_hash: str | None = None
        # token sha256 -> (principal, monotonic deadline); revocations in this process evict at once.
        self._cache: dict[str, tuple[Principal, float]] = {}

    @property
    def storage(self) -> WebStorage:
        return self._storage

    # passwords ---------------------------------------------------------------------------------------------
    async def hash_password(self, password: str) -> str:
        with self._hashes.admission():
            return await self._hashes.run(self._hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        """Inside a ``HashGate.admission``."""

        def check() -> bool:
            try:
                return self._hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await self._hashes.run(check)

    async def _burn_time(self, password: str) -> None:
        """Verify against a throwaway hash so an unknown user costs as long as a wrong password."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hashes.run(self._hasher.hash, secrets.token_urlsafe(16))
        await self._verify(self._dummy_hash, password)

    async def ensure_default_admin(self) -> None:
        """``admin`` / ``secret`` on a fresh install, flagged so the first login must change it."""
        if await self._storage.get_user(DEFAULT_ADMIN) is not None:
            return
        password_hash = await self.hash_password(DEFAULT_ADMIN_PASSWORD)
        await self._storage.ensure_user(DEFAULT_ADMIN, password_hash, Role.ADMIN, must_change_password=True)
        log.info("created the default admin user; its first login must set a new password")

    async def create_user(self, username: str, password: str) -> bool:
        """A new ROLE_USER (only ``admin`` is ROLE_ADMIN) under the password rule; False when the name is taken."""
        check_password_rule(password)
        return await self._storage.create_user(
            username, await self.hash_password(password), Role.USER, must_change_password=False
        )

    async def reset_password(self, username: str, new_password: str) -> None:
        """ROLE_ADMIN sets another user's password: every token of that user is revoked."""
        check_password_rule(new_password)
        await self._store_password(username, new_password, keep_token=None)
        log.info("password of user %s reset by ROLE_ADMIN; its tokens are revoked", username)

    async def change_own_password(
        self, caller: Principal, current_password: str, new_password: str, address: str
    ) -> None:
        """The caller proves it knows its password (throttled like a login); its other tokens are revoked."""
        check_new_password(current_password, new_password)
        if await self._check_password(caller.username, current_password, address) is None:
            raise unauthorized("current_password is wrong (the bearer token stays valid)")
        await self._store_password(caller.username, new_password, keep_token=caller.token_id)
        log.info("user %s changed its password; its other tokens are revoked", caller.username)

    async def _store_password(self, username: str, new_password: str, keep_token: str | None) -> None:
        password_hash = await self.hash_password(new_password)
        self.forget(username)
        if not await self._storage.set_password(username, password_hash, keep_token=keep_token):
            raise ApiError(ErrorCode.NOT_FOUND, f"user {username!r} not found")
        self.forget(username)

    async def _check_password(self, username: str, password: str, address: str) -> UserRow | None:
        """The user when ``password`` is its password, within the login limits (429 while locked)."""
        known = _USERNAME.fullmatch(username) is not None
        attempt = self._throttle.begin(username if known else None, address)
        try:
            with self._hashes.admission():
                user = await self._storage.get_user(username) if known else None
                if user is None:
                    await self._burn_time(password)
                    right = False
                else:
                    right = await self._verify(user.password_hash, password)
        except BaseException:
            attempt.abandoned()
            raise
        if not right:
            return None
        attempt.succeeded()
        return user

    # login / tokens ----------------------------------------------------------------------------------------
    async def login(self, authorization: str | None, new_password: str | None, address: str) -> IssuedToken:
        """Check Basic credentials, apply a pending or voluntary password change, issue a token.

        The token names the user as stored, whatever case the client typed (usernames are case-insensitive).
        A change of password here revokes every earlier token of the user.
        """
        username, password = parse_basic(authorization)
        username = username.lower()
        if new_password is not None:
            check_new_password(password, new_password)  # before the hash: a weak one costs no attempt
        user = await self._check_password(username, password, address)
        if user is None:
            raise unauthorized("invalid username or password", basic=True)
        if new_password is None and user.must_change_password:
            raise HttpApiError(
                ErrorCode.PASSWORD_CHANGE_REQUIRED,
                'first login: send {"new_password": "…"} with the Basic credentials',
                status=401,
                headers=_BASIC_CHALLENGE,
            )
        if new_password is not None:
            await self._store_password(user.username, new_password, keep_token=None)
            log.info("password changed at login for user %s; its earlier tokens are revoked", user.username)
        return await self.issue(user.username)

    async def issue(self, username: str) -> IssuedToken:
        now = datetime.now(UTC).replace(microsecond=0)
        expires_at = now + self._ttl
        jti = secrets.token_hex(16)
        claims = {"sub": username, "iat": int(now.timestamp()), "exp": int(expires_at.timestamp()), "jti": jti}
        token = jwt.encode(claims, self._key, algorithm="HS256")
        await self._storage.add_token(jti, username, _digest(token), now, expires_at)
        return IssuedToken(token, expires_at)

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a bearer token; any failure is a 401 (1005) without saying which check failed."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], options={"require": ["sub", "iat", "exp", "jti"]}
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.InvalidTokenError:
            raise unauthorized("invalid token") from None
        digest = _digest(token)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        self._cache.pop(digest, None)
        found = await self._storage.get_token(str(claims["jti"]))
        if found is None:
            raise unauthorized("invalid token")
        row, role = found
        if (
            row.revoked
            or row.username != claims["sub"]
            or row.expires_at <= datetime.now(UTC)
            or not hmac.compare_digest(row.token_sha256, digest)
        ):
            raise unauthorized("invalid token")
        principal = Principal(row.username, role, row.jti)
        if self._cache_ttl_s > 0:
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (principal, time.monotonic() + self._cache_ttl_s)
        return principal

    async def logout(self, username: str) -> None:
        """Revoke every token of ``username`` (the original revoked the user's tokens, not just one)."""
        self.forget(username)
        await self._storage.revoke_user_tokens(username)
        self.forget(username)

    def forget(self, username: str) -> None:
        """Drop cached checks for ``username`` so a revocation or deletion bites on the next request."""
        for digest in [d for d, (p, _) in self._cache.items() if p.username == username]:
            self._cache.pop(digest, None)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()
