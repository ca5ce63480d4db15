"""Requests that never reach a route: aiohttp's HTTP parser rejects them, and they still get the envelope.

An oversized header or token, a NUL byte in a header, a request line that is not HTTP, an over-long URL: aiohttp
answers these itself from ``RequestHandler.handle_error`` (a ``text/plain`` body quoting the offending bytes, and
the parser's traceback at ERROR in ``aiohttp.server``), before any middleware runs.  aiohttp 3.14 has no option
for that answer, so ``EnvelopeRunner`` makes its server build ``EnvelopeRequestHandler``s, whose
``handle_error`` answers in the On-Prem envelope (1025 "Invalid request"; 400, 414 for a long URL, 431 for large
or too many headers) and logs one WARNING line naming the rejection.  Neither says which bytes were wrong: the
offending line may be a bearer token.  Anything else that reaches ``handle_error`` is a bug (the error middleware
turns every route failure into a response): 1000/500 with its traceback in our log.

aiohttp internals relied on (pinned by ``tests/security/test_protocol_errors.py``): ``AppRunner._make_server``,
``Server.__call__`` as the protocol factory with ``Server._loop`` / ``Server._kwargs``, ``handle_error``'s
signature, and ``RequestHandler._messages`` / ``_current_request`` (``data_received``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from shared.errors import ApiError, ErrorCode
from webapp.envelope import error_response

log = logging.getLogger("openprem.webapp.http")

MAX_URL_BYTES = 8192
"""Longest request target (aiohttp's ``max_line_size``).  One byte count apart from ``MAX_HEADER_BYTES`` on
purpose: ``LineTooLong`` carries only the limit it hit, which tells a long URL (414) from a long header (431)."""
MAX_HEADER_BYTES = 8190
"""Longest header name + value (aiohttp's ``max_field_size``, its default)."""
MAX_HEADERS = 128
"""Most header lines in one request (aiohttp's ``max_headers``, its default)."""
_TOO_MANY_HEADERS = "Too many headers received"
_SUMMARY_MAX = 80


def rejection(exc: BaseException | None) -> tuple[int, str]:
    """The HTTP status and the ``details`` for a request the parser refused: never the request's own bytes."""
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_URL_BYTES,):
            return 414, f"the request URL is longer than {MAX_URL_BYTES} bytes"
        return 431, f"a request header is longer than {MAX_HEADER_BYTES} bytes"
    if isinstance(exc, BadStatusLine):
        return 400, "the request line is not a valid HTTP request line"
    if isinstance(exc, BadHttpMessage) and exc.message == _TOO_MANY_HEADERS:
        return 431, f"the request has more than {MAX_HEADERS} headers"
    if isinstance(exc, HttpProcessingError):
        return 400, f"malformed HTTP request ({summary(exc.message)})"
    return 400, "malformed HTTP request"


def summary(message: str) -> str:
    """aiohttp's own description of a fault, cut before it quotes the request ("...:\\n  b'X-A: a\\x00b'")."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    for stop in (":", " '", ' "', " b'", " bytearray("):
        first = first.split(stop, 1)[0]
    return first.strip()[:_SUMMARY_MAX] or "rejected by the HTTP parser"


class EnvelopeRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, answering its own rejections in the On-Prem envelope."""

    __slots__ = ("_version",)

    def __init__(self, manager: web.Server, *, version: str, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._version = version

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a body that turns malformed half-way fails the read of the request it belongs to.

        aiohttp queues such a rejection as the *next* request and leaves the interrupted one waiting for body
        bytes that never come, until the client gives up.  Instead that body's stream raises
        ``RequestPayloadError``: the error middleware answers 400 / 1025 and closes the connection after that
        answer (nothing after a framing error can be trusted).  A rejection that is not inside a body (a bad
        request line or header block) is answered by ``handle_error`` as aiohttp would, in the envelope.
        """
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) == queued or isinstance(self._messages[-1][0], RawRequestMessage):
            return
        payload = self._interrupted_body()
        if payload is None:
            return
        rejected = self._messages.pop()[0]
        _status, details = rejection(getattr(rejected, "exc", None))
        payload.set_exception(web.RequestPayloadError(details))
        payload.feed_eof()

    def _interrupted_body(self) -> StreamReader | None:
        """The unfinished body the parser was reading when it gave up (``_messages[-1]`` is the rejection): the
        last request queued before it, else the one being handled; ``None`` if that body was complete."""
        if len(self._messages) >= 2:
            payload = self._messages[-2][1]
        elif self._current_request is not None:
            payload = self._current_request.content
        else:
            return None
        return None if payload.is_eof() else payload

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # a response already started: nothing can be sent any more
            raise ConnectionError("the response was already started; cannot send an error response")
        if status >= 500:
            log.error("request from %s failed outside the middlewares", request.remote, exc_info=exc)
            error = ApiError(ErrorCode.GENERIC, "internal error")
        else:
            status, details = rejection(exc)
            log.warning("rejected a malformed request from %s (HTTP %d): %s", request.remote, status, details)
            error = ApiError(ErrorCode.INVALID_REQUEST, details)
        response = error_response(self._version, [error], status)
        response.force_close()  # the parser's state is unknown after a rejection: no keep-alive
        return response


class EnvelopeServer(web.Server):
    """``web.Server`` whose connections are ``EnvelopeRequestHandler``s."""

    def __init__(self, *args: Any, version: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._version = version

    def __call__(self) -> RequestHandler:
        return EnvelopeRequestHandler(self, loop=self._loop, version=self._version, **self._kwargs)


class EnvelopeRunner(web.AppRunner):
    """``web.AppRunner`` serving the application through ``EnvelopeServer`` with our parser limits."""

    def __init__(self, app: web.Application, *, version: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", MAX_URL_BYTES)
        kwargs.setdefault("max_field_size", MAX_HEADER_BYTES)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)
        self._version = version

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the startup signals and freezes the app, as aiohttp does
        return EnvelopeServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            version=self._version,
            **plain._kwargs,
        )
