"""What every console page shares: rendering, form reading, and errors shown inline."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from refreshd.console import auth
from refreshd.core.errors import InvalidValue, RefreshdError
from refreshd.http.errors import error_body, wire
from refreshd.http.keys import CLOCK, SETTINGS
from refreshd.http.resources import Expected

__all__ = ["Problem", "form", "page", "problem", "redirect"]


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """An error as the JSON API reports it (status, code, message, field), shown in a page."""

    status: int
    code: str
    message: str
    field: str | None


def problem(err: RefreshdError) -> Problem:
    e: Any = error_body(err)["error"]
    return Problem(wire(err).status, e["code"], e["message"], e["field"])


NAV = (
    ("Overview", "/console"),
    ("Experiments", "/console/experiments"),
    ("Fences", "/console/fences"),
    ("Rules", "/console/rules"),
    ("Models", "/console/models"),
    ("Decisions", "/console/decisions"),
    ("Policy", "/console/policy"),
)


def page(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """Render a page with what the layout needs: the CSP nonce, the CSRF token, the nav."""
    base = {
        "nonce": auth.nonce_of(request),
        "csrf": auth.csrf_of(request),
        "nav": NAV,
        "path": request.path,
        "token_set": request.config_dict[SETTINGS].admin_token is not None,
    }
    return aiohttp_jinja2.render_template(template, request, base | dict(context), status=status)


async def form(request: web.Request) -> Mapping[str, str]:
    """The POSTed form's fields as text (the guard has read and checked it already)."""
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


def shown_version(data: Mapping[str, str]) -> Expected:
    """The item version the page showed (its form's `version`): the write expects it."""
    raw = data.get("version", "")
    if not raw.isdigit():
        raise InvalidValue("version must be a whole number >= 0", field="version")
    return Expected(int(raw), "version")


def redirect(location: str) -> web.HTTPSeeOther:
    """POST-redirect-GET after a write that worked."""
    return web.HTTPSeeOther(location)


def now_ms(request: web.Request) -> int:
    return request.config_dict[CLOCK]()


def when(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    """A duration in its largest sensible unit."""
    if seconds is None:
        return "–"
    s = abs(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} d"
