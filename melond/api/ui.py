"""The web UI's files, served as they are from melond/ui (no build step, nothing from elsewhere)."""
from __future__ import annotations

from importlib import resources

from aiohttp import web

TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# Nothing but our own files: scripts, styles, images and requests to this origin only.
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _file(name: str) -> web.Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in TYPES:
        raise web.HTTPNotFound()
    try:
        data = resources.files("melond.ui").joinpath(name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(body=data, content_type=TYPES[suffix], charset="utf-8",
                        headers={"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})


async def index(request: web.Request) -> web.Response:
    return _file("index.html")


async def asset(request: web.Request) -> web.Response:
    return _file(request.match_info["name"])


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/", index)
    router.add_get("/ui/{name}", asset)
