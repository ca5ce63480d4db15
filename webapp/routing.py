"""A trailing slash is the same route: ``POST /v1/messages/`` is served as ``POST /v1/messages``.

On-Prem clients and Postman collections send both spellings.  aiohttp's ``normalize_path_middleware`` answers
with a redirect, which clients do not follow for a POST (or follow as a GET), so the route is resolved instead:
``TrailingSlashResource`` is indexed under ``/``, which the router tries only after every other resource failed,
and resolves the path without its final slash.  The match it returns is the real route's, so handlers, the auth
check, metrics labels and logs see the route template (``/v1/messages``); a wrong method is still a 405 naming
the allowed ones.  Only one slash is dropped, and a path that matches as it is never reaches this resource.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute, MatchInfoError, UrlDispatcher
from yarl import URL

if TYPE_CHECKING:
    from aiohttp.web_urldispatcher import _InfoDict


class TrailingSlashResource(AbstractResource):
    """Resolves ``<path>/`` as ``<path>`` through the same router; it owns no route of its own."""

    def __init__(self, router: UrlDispatcher) -> None:
        super().__init__(name=None)
        self._router = router

    @property
    def canonical(self) -> str:
        return "/"  # the router's last candidate for every path

    def url_for(self, **kwargs: str) -> URL:
        raise RuntimeError("the trailing-slash fallback has no URL of its own")

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the trailing-slash fallback is not for sub-applications")

    def get_info(self) -> _InfoDict:
        return {"formatter": "{path}/"}

    def raw_match(self, path: str) -> bool:
        return False

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo | None, set[str]]:
        raw = request.rel_url.raw_path
        stripped = raw[:-1]
        if not raw.endswith("/") or not stripped or stripped.endswith("/"):
            return None, set()
        match = await self._router.resolve(request.clone(rel_url=URL.build(path=stripped, encoded=True)))
        if isinstance(match, MatchInfoError):
            allowed: set[str] = getattr(match.http_exception, "allowed_methods", set())
            return None, set(allowed)
        return match, set()

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter(())


def serve_trailing_slashes(app: web.Application) -> None:
    """Register the fallback; call after every route is added."""
    app.router.register_resource(TrailingSlashResource(app.router))
