"""The browser's way in: a token (`mtoken create`) traded for a session of its own in a cookie.

Browsers cannot put a bearer header on an EventSource, so `POST /api/v1/session {"token": ...}`
checks the token and mints a session token, its child (melond/api/auth.py), set as an HttpOnly,
SameSite=Strict cookie (Secure over TLS); a request with the cookie and no Authorization header
is that session's user. Signing out revokes the session's token; revoking or expiring the pasted
token ends its sessions with it.

A request made with the cookie that changes anything, and the sign-in itself, must come from
this origin: the `X-Melon-CSRF: 1` header (which a page of another origin cannot send without a
CORS preflight melond never grants) and, where the browser sends one, an Origin naming the host
the request was sent to. The sign-in also needs a JSON body (`Content-Type: application/json`):
a cross-site HTML form can send `text/plain` that happens to parse as JSON, and a page that
could sign a browser in as someone else would see that person's jobs and submit as them.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from melond.errors import BadRequest, Forbidden

COOKIE = "melon_session"
CSRF_HEADER = "X-Melon-CSRF"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_token(request: web.Request) -> str | None:
    """The session's token, when the request comes with the cookie and no bearer header."""
    if "Authorization" in request.headers:
        return None
    return request.cookies.get(COOKIE) or None


def check_csrf(request: web.Request) -> None:
    """A state change signed in by cookie must come from Melon's own pages."""
    if request.method not in SAFE:
        check_same_origin(request, "a state-changing request signed in by cookie")


def check_sign_in(request: web.Request) -> None:
    """The sign-in (and sign-out) come from Melon's own page, with a JSON body."""
    if request.method == "POST" and request.content_type != "application/json":
        raise BadRequest(f"signing in takes a JSON body sent as Content-Type: application/json, not "
                         f"{request.content_type or 'none'!r}: send {{\"token\": \"melon_...\"}} with that header")
    check_same_origin(request, "signing in or out")


def check_same_origin(request: web.Request, what: str) -> None:
    """Refuse a request another site's page could have made: without the CSRF header, or with an
    Origin other than the host it was sent to."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"{what} needs the {CSRF_HEADER}: 1 header (Melon's UI sends it; a page of another "
                        f"site cannot)")
    origin = request.headers.get("Origin")
    if origin is None:
        return  # not a browser's cross-origin request (browsers send Origin on every such POST)
    host = (request.headers.get("Host") or "").lower()
    if origin == "null" or urlsplit(origin).netloc.lower() != host:
        raise Forbidden(f"{what} must come from this site's own pages: Origin {origin[:200]!r} is not "
                        f"{host!r}; open Melon's UI at the address you send requests to")


def set_cookie(response: web.Response, token: str, secure: bool, max_age: int | None) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/", max_age=max_age)


def clear_cookie(response: web.Response) -> None:
    response.del_cookie(COOKIE, path="/")
