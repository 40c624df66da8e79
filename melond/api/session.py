"""The browser's way in: a token (`mtoken create`) traded for a session cookie.

Browsers cannot put a bearer header on an EventSource, so `POST /api/v1/session {"token": ...}`
checks the token and sets it as an HttpOnly, SameSite=Strict cookie (Secure over TLS); a request
with the cookie and no Authorization header is that token's user. Revoking or expiring the token
ends the session with it. Every state-changing request made with the cookie must also carry the
`X-Melon-CSRF: 1` header, which a page of another origin cannot send without a CORS preflight
melond never grants.
"""
from __future__ import annotations

from aiohttp import web

from melond.errors import Forbidden

COOKIE = "melon_session"
CSRF_HEADER = "X-Melon-CSRF"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_token(request: web.Request) -> str | None:
    """The session's token, when the request comes with the cookie and no bearer header."""
    if "Authorization" in request.headers:
        return None
    return request.cookies.get(COOKIE) or None


def check_csrf(request: web.Request) -> None:
    if request.method not in SAFE and request.headers.get(CSRF_HEADER) != "1":
        raise Forbidden(f"a state-changing request signed in by cookie needs the {CSRF_HEADER}: 1 header "
                        f"(Melon's UI sends it; a page of another site cannot)")


def set_cookie(response: web.Response, token: str, secure: bool, max_age: int | None) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/", max_age=max_age)


def clear_cookie(response: web.Response) -> None:
    response.del_cookie(COOKIE, path="/")
