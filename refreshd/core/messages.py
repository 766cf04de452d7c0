"""Request and response bodies of the HTTP API, as msgspec structs (the wire contract)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from intent.events import Event, Props, SlotName, TsMs
from intent.features import LAUNCH_SOURCES
from refreshd import constants as C

Id = Annotated[str, Meta(min_length=1, max_length=C.ID_MAX_LEN, pattern=C.ID_PATTERN)]
Lat = Annotated[float, Meta(ge=-90.0, le=90.0)]
Lng = Annotated[float, Meta(ge=-180.0, le=180.0)]

Trigger = Literal["open", "return", "timer", "scroll", "pull"]
# How the app was opened (intent.features.LAUNCH_SOURCES, checked equal below).
Launch = Literal["icon", "push", "deeplink", "scan_shortcut", "return_from_flow", "widget"]
if Launch.__args__ != LAUNCH_SOURCES:  # type: ignore[attr-defined]  # pragma: no cover
    raise AssertionError("messages.Launch and intent.features.LAUNCH_SOURCES differ")
Reason = Literal[
    "intent", "geo", "event", "pull", "fallback", "cooldown", "no_intent", "frequency_cap",
    "quiet_hours",
]  # fmt: skip
DirectiveType = Literal["refresh", "fix_now", "show_cards", "reclaim_cards", "update_model"]

DIRECTIVE_TYPES: tuple[str, ...] = DirectiveType.__args__  # type: ignore[attr-defined]
AckList = Annotated[
    list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=C.MAX_ACKS)
]


class Directive(msgspec.Struct, omit_defaults=True):
    """An instruction waiting for the device's next contact until acknowledged by id."""

    id: str
    type: DirectiveType
    created_ts: int
    expires_ts: int
    slots: list[str] | None = None
    payload: dict[str, Any] | None = None
    source: str | None = None


class DecideRequest(msgspec.Struct, kw_only=True):
    user_id: Id
    ts: TsMs
    trigger: Trigger
    slots: Annotated[list[SlotName], Meta(max_length=32)] | None = None
    lat: Lat | None = None
    lng: Lng | None = None
    features: (
        Annotated[dict[Annotated[str, Meta(max_length=64)], float], Meta(max_length=256)] | None
    ) = None
    tz_offset_min: Annotated[int, Meta(ge=-840, le=840)] | None = None
    ack: AckList | None = None
    # What the device knows of the current visit (all optional; features use MISSING without).
    launch: Launch | None = None  # how the app was opened for this visit
    home_dwell_s: Annotated[float, Meta(ge=0.0, le=86_400.0)] | None = None  # homepage on screen
    scrolls: Annotated[int, Meta(ge=0, le=10_000)] | None = None  # scrolls so far in the visit
    scroll_depth: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None  # deepest feed share seen


class Exposure(msgspec.Struct):
    id: str
    variant: str


class DecideResponse(msgspec.Struct):
    decision_id: str
    refresh: bool
    reason: Reason
    score: float | None
    threshold: float | None
    experiment: Exposure | None
    model_version: str | None
    next_check_s: int
    directives: list[Directive]
    degraded: bool
    degraded_reasons: list[str]
    slots: list[str] | None = None


class LocationRequest(msgspec.Struct, kw_only=True):
    user_id: Id
    ts: TsMs
    lat: Lat
    lng: Lng
    accuracy_m: Annotated[float, Meta(ge=0.0, le=10_000.0)]
    speed_mps: Annotated[float, Meta(ge=0.0, le=350.0)] | None = None
    ack: AckList | None = None


class CoverageOut(msgspec.Struct):
    lat: float
    lng: float
    radius_m: float


class TransitionOut(msgspec.Struct):
    fence_id: str
    type: Literal["enter_buffer", "enter", "dwell", "exit", "exit_buffer"]
    ts: int


class LocationResponse(msgspec.Struct):
    transitions: list[TransitionOut]
    zone: Annotated[int, Meta(ge=1, le=5)]
    coverage: CoverageOut
    next_fix_s: int
    refresh: bool
    service_cards: list[Any]
    directives: list[Directive]
    ignored: bool = False


class EventsRequest(msgspec.Struct, kw_only=True):
    user_id: Id
    batch_id: Id
    events: Annotated[list[Event], Meta(min_length=1, max_length=C.MAX_EVENTS_PER_BATCH)]
    ack: AckList | None = None


class EventsResponse(msgspec.Struct):
    accepted: int
    duplicate: bool
    directives: list[Directive]


class DirectiveRequest(msgspec.Struct, kw_only=True):
    user_id: Id
    type: DirectiveType
    slots: Annotated[list[SlotName], Meta(max_length=32)] | None = None
    payload: Props | None = None
    ttl_s: Annotated[int, Meta(ge=1, le=7 * 86_400)] | None = None


class DirectiveCreated(msgspec.Struct):
    directive: Directive


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    field: str | None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    store: bool
    model: bool
