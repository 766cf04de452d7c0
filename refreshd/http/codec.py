"""Decoding requests and encoding responses: the only place JSON meets the wire."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from refreshd import constants as C
from refreshd.core.errors import (
    BodyTooLarge,
    InvalidValue,
    MalformedJSON,
    UnsupportedMediaType,
)
from refreshd.http.keys import SETTINGS

T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r"at `\$\.?(?P<path>[^`]*)`")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")


def _field(message: str) -> str | None:
    missing = _MISSING.search(message)
    path = _PATH.search(message)
    parts = [
        p
        for p in ((path.group("path") if path else ""), missing.group("name") if missing else "")
        if p
    ]
    return ".".join(parts).replace("[...]", "") or None


async def read_json(request: web.Request, typ: type[T]) -> T:
    """Decode the request body into `typ` or raise the matching 4xx error."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"expected Content-Type application/json, got {request.content_type or 'none'}"
        )
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        raise BodyTooLarge(f"request body exceeds {limit} bytes", field=None) from None
    try:
        return msgspec.json.decode(body, type=typ)
    except msgspec.ValidationError as exc:
        raise InvalidValue(str(exc), field=_field(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise MalformedJSON("body is not valid UTF-8") from None


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Encode a struct (or plain data) as a JSON response."""
    return web.Response(
        body=_encoder.encode(obj), status=status, content_type="application/json", headers=headers
    )


_SAFE_ID = re.compile(C.ID_PATTERN)


def path_id(
    request: web.Request, what: str, *, max_len: int = C.ID_MAX_LEN, name: str = "id"
) -> str:
    """Return the `{id}` (or `{name}`) of the path, or a 422 naming it when it cannot be a key."""
    return valid_id(request.match_info[name], what, max_len=max_len, name=name)


def valid_id(item_id: str, what: str, *, max_len: int = C.ID_MAX_LEN, name: str = "id") -> str:
    """Return `item_id`, or a 422 naming `name` when it cannot be a key."""
    if len(item_id) > max_len or not _SAFE_ID.match(item_id):
        raise InvalidValue(
            f"{what} {name} must be 1–{max_len} characters of A–Z a–z 0–9 . _ : @ -", field=name
        )
    return item_id


def query_flag(request: web.Request, name: str) -> bool:
    """Return a `true|false` query parameter (absent: false), or a 422 naming it."""
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise InvalidValue(f"{name} must be true or false", field=name)
    return raw in ("true", "1")


def query_int(request: web.Request, name: str, *, default: int, lo: int, hi: int) -> int:
    """Return an integer query parameter in [lo, hi] (absent: `default`), or a 422 naming it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not lo <= int(raw) <= hi:
        raise InvalidValue(f"{name} must be an integer in [{lo}, {hi}]", field=name)
    return int(raw)


# Who an operator action is recorded as: the X-Operator header, else the API itself. The one
# admin token names no one, so the header is what tells operators apart.
OPERATOR_HEADER = "X-Operator"
OPERATOR_MAX_LEN = 64


def operator(request: web.Request) -> str:
    """Return who the request acts for (`X-Operator`, default "api"), or a 422 naming it."""
    who = request.headers.get(OPERATOR_HEADER)
    if who is None:
        return "api"
    if len(who) > OPERATOR_MAX_LEN or not _SAFE_ID.match(who):
        raise InvalidValue(
            f"{OPERATOR_HEADER} must be 1–{OPERATOR_MAX_LEN} characters of A–Z a–z 0–9 . _ : @ -",
            field=OPERATOR_HEADER,
        )
    return who


async def read_any_json(
    request: web.Request, *, types: tuple[str, ...] = ("application/json",)
) -> Any:
    """Decode a JSON body without a schema (the caller validates and names bad fields)."""
    if request.content_type not in types:
        raise UnsupportedMediaType(f"expected Content-Type {' or '.join(types)}")
    return decode_any(await request.read())


def decode_any(raw: bytes | str) -> Any:
    """Decode JSON without a schema, or raise MalformedJSON (a 400)."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise MalformedJSON("body is not valid JSON") from None
