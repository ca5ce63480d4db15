"""Retry-safe requests: the ``Idempotency-Key`` header's rules, shared by webapp (media) and coreapp (sends).

A caller that did not get an answer sends the same request again with the same key; the first success is
remembered for ``TTL`` and answered again instead of doing the work twice.  Keys are scoped per install (the
caller owns the key space, as with one Stripe account), and stored as their SHA-256: the database never
compares the raw strings, so MariaDB's case-insensitive, pad-space collations cannot make ``abc`` and ``ABC ``
the same key.  A request is identified by the SHA-256 of its normalised form (``fingerprint``): the same key with
another request is refused (1004, HTTP 409), never answered with the first request's result.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import orjson

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
KEY_PATTERN = r"^[\x20-\x7e]+$"
"""Printable ASCII (space to ``~``); HTTP already strips leading and trailing spaces."""
TTL = timedelta(hours=24)
"""How long a key is remembered; afterwards the same key starts a new request (rows are then collected)."""

_KEY = re.compile(KEY_PATTERN)


def valid_key(value: str) -> bool:
    return 0 < len(value) <= MAX_KEY_LENGTH and _KEY.match(value) is not None


def key_digest(key: str) -> str:
    """What the tables store for ``key``: hex SHA-256 (fixed width, compared byte for byte on every engine)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def fingerprint(document: Any) -> str:
    """Hex SHA-256 of a JSON document with its keys sorted: the same request hashes the same however the client
    ordered its members."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
