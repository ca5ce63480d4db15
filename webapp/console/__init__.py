"""The console (issue 14.3): a small admin page at ``/console``, plain HTML, CSS and JavaScript shipped in the package.

Only the page shell is public: it holds no data.  The page logs in with ``POST /v1/users/login`` (the same users,
the forced first password change included), keeps the bearer token in ``sessionStorage`` and reads everything it
shows from the ``/v1`` API with it, so it can do nothing the token could not.  No CDN and no inline script or
style: every asset is served from here under a strict Content-Security-Policy (``'self'`` scripts, styles and
fetches only, no framing, no form posts, no base URL).

The files are read once when this module is imported (before the loop runs) and served from memory; a name not
in ``ASSETS`` is the ordinary 404 envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from webapp.openapi import doc

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_PATH = "/console"
STATIC_PREFIX = "/console/static/"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # the forms are handled by the script: without it they must not submit at all
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str


def _load(name: str) -> Asset:
    path = STATIC_DIR / name
    return Asset(path.read_bytes(), _TYPES[path.suffix])


PAGE = _load("index.html")
ASSETS = {name: _load(name) for name in ("console.js", "console.css", "favicon.svg")}

routes = web.RouteTableDef()


def _serve(asset: Asset, cache: str) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    return web.Response(body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers)


@routes.get(PAGE_PATH)
@doc("The console page (no data: it reads the /v1 API with the token it logs in for)", public=True, hidden=True)
async def page(_request: web.Request) -> web.Response:
    return _serve(PAGE, "no-store")


@routes.get(STATIC_PREFIX + "{name}")
@doc("A console asset (script or style sheet)", public=True, hidden=True)
async def asset(request: web.Request) -> web.Response:
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    return _serve(found, "no-cache")
