"""The gate for API calls that need the network now: a READY chat connection, else 1011 (reference §4)."""

from __future__ import annotations

import logging
from typing import Protocol

from coreapp.chat.link import ChatLink, ConnState
from shared.errors import ApiError, ErrorCode

log = logging.getLogger("openprem.coreapp.api")


class LinkSource(Protocol):
    """Where the current chat connection is found (``coreapp.scope.CurrentChat``): ``None`` before registration,
    and a new one after a re-registration or a restore."""

    @property
    def link(self) -> ChatLink | None: ...


def ready_link(source: LinkSource, what: str) -> ChatLink:
    """The live connection, or ``ApiError(NOT_READY)`` saying why (not registered / not connected)."""
    link = source.link
    if link is None:
        log.warning("%s refused: service not ready (not registered)", what)
        raise ApiError(ErrorCode.NOT_READY, "not registered: register the number first")
    if link.state is not ConnState.READY:
        log.warning("%s refused: service not ready (chat connection is %s)", what, link.state.value)
        raise ApiError(ErrorCode.NOT_READY, f"not connected to the network (connection is {link.state.value})")
    return link
