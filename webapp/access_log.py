"""One short line per request, without aiohttp's default ``extra`` fields (request headers and the like),
which the structured log would otherwise print in full for every call.  Client bodies and tokens never
appear: only the method, the path (without query string), the status and the time taken."""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.rel_url.path, response.status, time * 1000.0)
