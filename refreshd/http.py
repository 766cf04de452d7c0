"""Decoding requests and encoding responses: the only place JSON meets the wire."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from refreshd.errors import BodyTooLarge, InvalidValue, MalformedJSON, UnsupportedMediaType
from refreshd.keys import SETTINGS

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
