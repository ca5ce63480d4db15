"""The one exception handlers raise to answer a request with an ``Error`` frame."""

from __future__ import annotations

from shared.errors import ErrorCode


class Refused(Exception):
    """Answer the request with ``Error(code, message)``; ``close`` also ends the connection."""

    def __init__(self, code: ErrorCode | int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.code = code.code if isinstance(code, ErrorCode) else code
        self.message = message
        self.close = close
