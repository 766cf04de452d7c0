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


def path_id(request: web.Request, what: str, *, max_len: int = C.ID_MAX_LEN) -> str:
    """Return the `{id}` of the path, or a 422 naming it when it cannot be a key."""
    return valid_id(request.match_info["id"], what, max_len=max_len)


def valid_id(item_id: str, what: str, *, max_len: int = C.ID_MAX_LEN) -> str:
    """Return `item_id`, or a 422 naming `id` when it cannot be a key."""
    if len(item_id) > max_len or not _SAFE_ID.match(item_id):
        raise InvalidValue(
            f"{what} id must be 1–{max_len} characters of A–Z a–z 0–9 . _ : @ -", field="id"
        )
    return item_id


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
