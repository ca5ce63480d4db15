"""Failures of the chat link, as types the services can tell apart."""

from __future__ import annotations

from shared.errors import ErrorCode


class ChatUnavailable(Exception):
    """No usable session: not connected, the connection dropped, or a reply did not come in time."""


class ChatUnreachable(ChatUnavailable):
    """Neither the port nor the fallback port accepted a TLS connection."""


class ChatRemoteError(Exception):
    """The network answered a request with an ``Error`` frame (an On-Prem code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def error_code(self) -> ErrorCode:
        return ErrorCode.from_code(self.code)


class UnexpectedFrame(ChatUnavailable):
    """The peer answered with a frame of the wrong kind (protocol violation: the session is dropped)."""
