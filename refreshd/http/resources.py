"""One configuration resource for every kind: PUT/GET/DELETE of an item, and the list.

A kind (event rules, geofences, experiments, the policy) says how a body is validated, what is
stored and served, and which worker copy to refresh; the routes, 404s, versioned writes and
OpenAPI entries are built here once.

Versions: an item's version is the kind version that last wrote it (`ConfigWrite`), 0 while
it does not exist. A write may name the version it expects — `If-Match: "7"` (or `7`), or a
`version` field in a PUT body — and is refused with 409 when the item is elsewhere; the check
and the write are one atomic store step. Without one the write is unconditional. Responses
carry the item's version in `ETag` (and in the body's `version`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta

from refreshd import constants as C
from refreshd.core.errors import Conflict, InvalidValue, NotFound
from refreshd.http.codec import json_response, path_id, read_any_json, valid_id
from refreshd.http.keys import STORE
from refreshd.http.routing import BODY_ERRORS, IF_MATCH_PATTERN, Route
from refreshd.store.protocol import ConfigWrite, Store

__all__ = ["ConfigResource", "Expected", "ExpectedVersion", "Item", "expected_version"]

T = TypeVar("T")
# Where a kind finds the store and its book: the application, or a request's `config_dict`
# (a sub-application's handler, such as the console's, sees its parent's keys through it).
Config = Mapping[Any, Any]
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
# A write checked against the stored item (an experiment's frozen fields) expects the version
# it read; when another write slips in between it reads and checks again, this many times.
CHECKED_WRITE_ATTEMPTS = 5

# The `version` field a PUT body may carry (documentation; `expected_version` reads it).
ExpectedVersion = (
    Annotated[
        int,
        Meta(ge=0, description="Write only if the item is at this version (0: it does not exist)"),
    ]
    | None
)


@dataclasses.dataclass(frozen=True, slots=True)
class Expected:
    """The version a write expects (None: unconditional) and where the client said it."""

    version: int | None = None
    field: str | None = None  # "version" from the body, None from If-Match

    def conflict(self, what: str, item_id: str, current: int) -> Conflict:
        if self.version is None:  # a checked write that kept losing races
            return Conflict(f"{what} {item_id!r} kept changing during the write; retry")
        return Conflict(
            f"{what} {item_id!r} is at version {current}, not {self.version}", field=self.field
        )


def expected_version(request: web.Request, body: Any = None) -> Expected:
    """Read the expected version from `If-Match` and a dict body's `version` (removed from it)."""
    header = request.headers.get("If-Match")
    from_header = None
    if header is not None:
        if not _IF_MATCH.fullmatch(header.strip()):
            raise InvalidValue(
                'If-Match takes the item version the write expects, e.g. "7"', field="If-Match"
            )
        from_header = int(header.strip().strip('"'))
    from_body = None
    if isinstance(body, dict) and "version" in body:
        raw = body.pop("version")
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if raw is not None and (type(raw) is not int or raw < 0):
            raise InvalidValue("version must be a whole number >= 0", field="version")
        from_body = raw
    if from_body is not None:
        if from_header is not None and from_header != from_body:
            raise InvalidValue("If-Match and the body's version disagree", field="version")
        return Expected(from_body, "version")
    return Expected(from_header, None)


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    """One stored item as served: its id, document and version."""

    id: str
    doc: dict[str, Any]
    version: int


def _decode(item_id: str, blob: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.json.decode(blob)
    return doc


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConfigResource(Generic[T]):
    """The HTTP resource of one kind of configuration; `routes()` is its route table."""

    kind: str  # the store's kind
    what: str  # what an item is called in errors ("trigger")
    path: str  # the collection (items at {path}/{id}), or the item of a single-item kind
    parse: Callable[[str, Any], T]  # (id, decoded body) → item, or a 4xx naming the field
    to_json: Callable[[T], dict[str, Any]]  # the document stored and served
    item_body: Callable[[str, dict[str, Any], int], Any]  # (id, document, version) → body
    book: web.AppKey[Any]  # the worker's copy (`.refresh(store)`), refreshed after a write
    put_summary: str
    get_summary: str
    request_doc: type  # OpenAPI shapes
    item_doc: type
    list_summary: str | None = None  # with list_doc: GET {path}
    list_doc: type | None = None
    # (kind version, items) → the list's body; by default list_doc(version, [item bodies])
    list_body: Callable[[int, list[Item]], Any] | None = None
    delete_summary: str | None = None  # DELETE {path}/{id}
    load: Callable[[str, bytes], dict[str, Any]] = _decode  # stored blob → served document
    check: Callable[[T, T], None] | None = None  # (stored, new) → raise to refuse the write
    single: str | None = None  # the one item id of a single-item kind (no list, no delete)
    # A single-item kind's item before it is first written (from the app: it may depend on
    # the settings).
    default: Callable[[Config], T] | None = None
    max_id_len: int = C.ID_MAX_LEN
    # Keep this many past versions of the items by version (`Store.get_config_at`; replay).
    history: int = 0
    content_types: tuple[str, ...] = ("application/json",)

    def routes(self) -> tuple[Route, ...]:
        item = self.path if self.single else self.path + "/{id}"
        id_errors = () if self.single else (404, 422)
        out: list[Route] = []
        if self.list_summary is not None:
            out.append(
                Route(
                    "GET",
                    self.path,
                    self.list_items,
                    self.list_summary,
                    None,
                    self.list_doc,
                    errors=(503,),
                    admin=True,  # rules, fences and experiments are business data
                )
            )
        out.append(
            Route(
                "PUT",
                item,
                self.put_item,
                self.put_summary,
                self.request_doc,
                self.item_doc,
                errors=(*BODY_ERRORS, 409, 503),
                admin=True,
                versioned=True,
            )
        )
        out.append(
            Route(
                "GET",
                item,
                self.get_item,
                self.get_summary,
                None,
                self.item_doc,
                errors=(*id_errors, 503),
                admin=True,
                versioned=True,
            )
        )
        if self.delete_summary is not None:
            out.append(
                Route(
                    "DELETE",
                    item,
                    self.delete_item,
                    self.delete_summary,
                    status=204,
                    errors=(404, 409, 422, 503),
                    admin=True,
                    versioned=True,
                )
            )
        return tuple(out)

    def item_id(self, request: web.Request) -> str:
        return self.single or path_id(request, self.what, max_len=self.max_id_len)

    def valid_id(self, item_id: str) -> str:
        """An item id given outside the path (a console form), checked as the path's is."""
        return self.single or valid_id(item_id, self.what, max_len=self.max_id_len)

    def _missing(self, item_id: str) -> NotFound:
        return NotFound(f"no {self.what} {item_id!r}", field="id")

    async def read(self, store: Store, item_id: str) -> tuple[int, bytes]:
        """Return (version, blob) of a stored item, or 404."""
        stored = await store.get_config_item(self.kind, item_id)
        if stored is None:
            raise self._missing(item_id)
        return stored

    def _respond(self, item_id: str, doc: dict[str, Any], version: int) -> web.Response:
        body = self.item_body(item_id, doc, version)
        return json_response(body, headers={"ETag": f'"{version}"'})

    async def items(self, store: Store) -> tuple[int, list[Item]]:
        """Return (kind version, every item by id): the list route's data (and the console's)."""
        version, items = await store.get_config_items(self.kind)
        return version, [Item(i, self.load(i, blob), v) for i, (v, blob) in sorted(items.items())]

    async def list_items(self, request: web.Request) -> web.Response:
        version, out = await self.items(request.app[STORE])
        if self.list_body is not None:
            return json_response(self.list_body(version, out))
        assert self.list_doc is not None
        return json_response(
            self.list_doc(version, [self.item_body(i.id, i.doc, i.version) for i in out])
        )

    async def get(self, app: Config, item_id: str) -> Item:
        """Return one item (a single-item kind's default, version 0, before its first write)."""
        stored = await app[STORE].get_config_item(self.kind, item_id)
        if stored is not None:
            return Item(item_id, self.load(item_id, stored[1]), stored[0])
        if self.default is None:
            raise self._missing(item_id)
        return Item(item_id, self.to_json(self.default(app)), 0)

    async def get_item(self, request: web.Request) -> web.Response:
        item = await self.get(request.config_dict, self.item_id(request))
        return self._respond(item.id, item.doc, item.version)

    async def write(
        self, app: Config, item_id: str, body: Any, expected: Expected | None = None
    ) -> Item:
        """Validate `body` and store it as item `item_id`; refresh this worker's copy.

        The one write path of a kind: the PUT route and the console both call it, so both
        validate and answer alike (a 422 naming the field, a 409 on a version mismatch).
        """
        expected = expected or Expected()
        item = self.parse(item_id, body)
        doc = self.to_json(item)
        blob = msgspec.json.encode(doc)
        store = app[STORE]
        if self.check is None:
            result = await store.put_config(
                self.kind, item_id, blob, expected.version, history=self.history
            )
        else:
            result = await self._checked_put(store, item_id, item, blob, expected.version)
        if result.status == "conflict":
            raise expected.conflict(self.what, item_id, result.version)
        await app[self.book].refresh(store)
        return Item(item_id, doc, result.version)

    async def put_item(self, request: web.Request) -> web.Response:
        item_id = self.item_id(request)
        body = await read_any_json(request, types=self.content_types)
        expected = expected_version(request, body)
        item = await self.write(request.config_dict, item_id, body, expected)
        return self._respond(item.id, item.doc, item.version)

    async def _checked_put(
        self, store: Store, item_id: str, item: T, blob: bytes, expected: int | None
    ) -> ConfigWrite:
        """Check the new item against the stored one, and write only if that one still is."""
        assert self.check is not None
        result = ConfigWrite("conflict", 0)
        for _ in range(CHECKED_WRITE_ATTEMPTS):
            stored = await store.get_config_item(self.kind, item_id)
            current = 0 if stored is None else stored[0]
            if expected is not None and expected != current:
                return ConfigWrite("conflict", current)
            if stored is not None:
                self.check(self.parse(item_id, msgspec.json.decode(stored[1])), item)
            result = await store.put_config(self.kind, item_id, blob, current, history=self.history)
            if result.status == "ok" or expected is not None:
                break
        return result

    async def delete(self, app: Config, item_id: str, expected: Expected | None = None) -> None:
        """Delete item `item_id` (404 if missing, 409 on a version mismatch); refresh the copy."""
        expected = expected or Expected()
        store = app[STORE]
        result = await store.delete_config(self.kind, item_id, expected.version)
        if result is None:
            raise self._missing(item_id)
        if result.status == "conflict":
            raise expected.conflict(self.what, item_id, result.version)
        await app[self.book].refresh(store)

    async def delete_item(self, request: web.Request) -> web.Response:
        item_id = self.item_id(request)
        await self.delete(request.config_dict, item_id, expected_version(request))
        return web.Response(status=204)
