"""Who may open the console, CSRF on its forms, and the security headers of every page.

- `REFRESHD_ADMIN_TOKEN` set: every console page and fragment needs a session, made by the
  login form (the token typed once; the cookie holds an HMAC of a random id under the token,
  never the token itself, `HttpOnly`, `SameSite=Strict`, 12 h) or an `Authorization: Bearer`
  header (scripts). Changing the token logs every session out.
- No token: the console answers only when the service listens on loopback; anywhere else
  anyone on the network could change the configuration, so it answers 403.
- Every POST carries the CSRF token of the `refreshd_console_csrf` cookie in a form field
  (`csrf`) or the `X-CSRF-Token` header (double submit: another site can neither read nor set
  a `SameSite=Strict` cookie), except a bearer-authenticated one, which no browser sends
  on its own.
- Headers: a CSP that runs only this request's nonce-tagged scripts, `frame-ancestors 'none'`,
  `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`, `Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from refreshd.http.keys import SETTINGS

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "csrf_of", "guard", "is_loopback", "nonce_of"]

PREFIX = "/console"
SESSION_COOKIE = "refreshd_console_session"
CSRF_COOKIE = "refreshd_console_csrf"
SESSION_S = 12 * 3600
OPEN_PATHS = (f"{PREFIX}/login", f"{PREFIX}/static/")  # the login form and its CSS, JS
NONCE = web.RequestKey("console_nonce", str)
CSRF = web.RequestKey("console_csrf", str)


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _sign(token: str, value: str) -> str:
    return hmac.new(token.encode(), value.encode(), hashlib.sha256).hexdigest()


def new_session(token: str, now_s: float) -> str:
    value = f"{int(now_s)}.{secrets.token_hex(16)}"
    return f"{value}.{_sign(token, value)}"


def valid_session(token: str, cookie: str, now_s: float) -> bool:
    value, _, sig = cookie.rpartition(".")
    issued, _, _ = value.partition(".")
    if not issued.isdigit() or not 0 <= now_s - int(issued) <= SESSION_S:
        return False
    return hmac.compare_digest(sig, _sign(token, value))


def _bearer_ok(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def set_session(response: web.StreamResponse, request: web.Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        new_session(token, time.time()),
        max_age=SESSION_S,
        path=PREFIX,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def nonce_of(request: web.Request) -> str:
    return request[NONCE]


def csrf_of(request: web.Request) -> str:
    return request[CSRF]


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or (origin == "null" and not request.headers.get("Sec-Fetch-Site")):
        return True  # not a browser's cross-site request (curl; an old browser's form)
    return urlsplit(origin).netloc == request.host


def csp(nonce: str, tiles: str | None) -> str:
    img = "'self' data:"
    if tiles:
        parts = urlsplit(tiles)
        img += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src {img}; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def forbidden(text: str, status: int = 403) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the rules of this module's docstring to one console request."""
    settings = request.config_dict[SETTINGS]
    token = settings.admin_token
    request[NONCE] = secrets.token_urlsafe(16)
    given_csrf = request.cookies.get(CSRF_COOKIE, "")
    request[CSRF] = given_csrf if len(given_csrf) == 32 else secrets.token_hex(16)
    response = await _checked(request, handler, token, settings.host)
    if given_csrf != request[CSRF]:
        response.set_cookie(
            CSRF_COOKIE, request[CSRF], path=PREFIX, httponly=True, samesite="Strict",
            secure=request.secure,
        )  # fmt: skip
    h = response.headers
    h["Content-Security-Policy"] = csp(request[NONCE], settings.console_tiles)
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "same-origin"
    h.setdefault("Cache-Control", "no-store")
    return response


async def _checked(
    request: web.Request, handler: Handler, token: str | None, host: str
) -> web.StreamResponse:
    bearer = False
    if token is None:
        if not is_loopback(host):
            return forbidden(
                "the console is served without REFRESHD_ADMIN_TOKEN only when the service "
                f"listens on loopback; it listens on {host}: set a token to use it"
            )
    elif not request.path.startswith(OPEN_PATHS):
        bearer = _bearer_ok(request, token)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if not bearer and not valid_session(token, cookie, time.time()):
            if request.method in ("GET", "HEAD") and "fragment" not in request.path:
                raise web.HTTPSeeOther(f"{PREFIX}/login?next={request.path_qs}")
            return forbidden("log in to the console first", status=401)
    if request.method not in ("GET", "HEAD") and not bearer:
        if not _same_origin(request):
            return forbidden("cross-origin console write refused")
        form = await request.post() if request.content_type.endswith("form-urlencoded") else {}
        sent = request.headers.get("X-CSRF-Token") or str(form.get("csrf", ""))
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(sent, cookie):
            return forbidden("missing or wrong CSRF token: reload the page and try again")
    return await handler(request)
