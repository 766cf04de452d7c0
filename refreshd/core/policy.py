"""The policy document: the decision ladder's nodes, their order and parameters, as data.

A decision walks an ordered list of small nodes (an outreach-pipeline idea: small steps
combined by configuration). Each node either decides — and names itself as the decision's
`reason` — or passes to the next. The document is versioned in the store (`PUT /v1/policy`)
and every worker decides with the same one; an experiment variant may override node
parameters (`VariantParams`: threshold, fallback interval, intent or fixed).

The default document is the ladder refreshd has always had: pull, event, geo, cooldown,
intent, fallback. `frequency_cap` and `quiet_hours` are there to add.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from refreshd import constants as C
from refreshd.core.errors import InvalidValue, MalformedJSON
from refreshd.core.experiments import VariantParams, field_of

__all__ = [
    "DEFAULT_FALLBACK_TRIGGERS",
    "DEFAULT_POLICY",
    "CooldownNode",
    "EventNode",
    "FallbackNode",
    "FrequencyCapNode",
    "GeoNode",
    "IntentNode",
    "Ladder",
    "Node",
    "PolicyDoc",
    "PolicyError",
    "PullNode",
    "QuietHoursNode",
    "Trigger",
    "ladder_for",
    "parse_policy",
    "policy_to_json",
    "standard_policy",
]

Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
Seconds = Annotated[int, Meta(ge=0, le=7 * 86_400)]
Hour = Annotated[int, Meta(ge=0, le=23)]


class _Node(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    pass


class PullNode(_Node, tag="pull", frozen=True):
    """Pull-to-refresh always refreshes: the user asked."""


class EventNode(_Node, tag="event", frozen=True):
    """A pending `refresh` directive (from an event rule or the API) refreshes its slots."""


class GeoNode(_Node, tag="geo", frozen=True):
    """The device left its coverage circle or changed zone."""


class CooldownNode(_Node, tag="cooldown", frozen=True):
    """Never refresh twice within `min_interval_s` (a faster refresh looks like flicker)."""

    min_interval_s: Seconds = C.MIN_INTERVAL_S


class FrequencyCapNode(_Node, tag="frequency_cap", frozen=True):
    """At most `per_hour` / `per_day` refreshes in the trailing hour / day (unset: no cap)."""

    per_hour: Annotated[int, Meta(ge=1, le=C.MAX_CAP_PER_DAY)] | None = None
    per_day: Annotated[int, Meta(ge=1, le=C.MAX_CAP_PER_DAY)] | None = None


class QuietHoursNode(_Node, tag="quiet_hours", frozen=True):
    """No refresh from `start_hour` to `end_hour` of the user's local day (tz_offset_min; UTC
    when the device does not say); a window may wrap midnight (23 → 7)."""

    start_hour: Hour
    end_hour: Hour


class IntentNode(_Node, tag="intent", frozen=True):
    """Refresh when the model's score clears `threshold`.

    `explore_share` of the decisions of users outside experiments are exploration traffic: a
    logged coin flip that refreshes with probability `explore_refresh_share`, drawn from a hash
    of (`explore_seed`, user, ts) so a replay draws the same. Training fits the staleness
    curve from them (what a refresh gains does not depend on the user in those rows).
    """

    threshold: Unit = C.DEFAULT_THRESHOLD
    explore_share: Unit = 0.0
    explore_refresh_share: Unit = 0.5
    explore_seed: Annotated[str, Meta(min_length=1, max_length=64)] = "refreshd"


Trigger = Literal["open", "return", "timer", "scroll"]
# The triggers the fallback rule refreshes on unless a document says otherwise (the ladder's
# FALLBACK_TRIGGERS); a document that leaves `triggers` out decides exactly as before.
DEFAULT_FALLBACK_TRIGGERS: tuple[Trigger, ...] = ("open", "return", "timer")


class FallbackNode(_Node, tag="fallback", frozen=True):
    """The documented fallback rule, and the last node: on open, return or timer, refresh when
    none is on record or the last is at least `interval_s` old; never on scroll.

    `triggers` (optional, a non-empty list of open, return, timer, scroll) changes the triggers
    it refreshes on: `["open"]` is "refresh at open after a gap of `interval_s`", `["scroll"]`
    with `interval_s: 0` is "refresh at the first scroll of a visit" (the device asks once per
    visit on scroll). A pull always refreshes earlier in the ladder.
    """

    interval_s: Seconds = C.FALLBACK_INTERVAL_S
    triggers: Annotated[tuple[Trigger, ...], Meta(min_length=1)] = DEFAULT_FALLBACK_TRIGGERS


Node = (
    PullNode
    | EventNode
    | GeoNode
    | CooldownNode
    | FrequencyCapNode
    | QuietHoursNode
    | IntentNode
    | FallbackNode
)
NODE_TYPES = (
    "pull",
    "event",
    "geo",
    "cooldown",
    "frequency_cap",
    "quiet_hours",
    "intent",
    "fallback",
)


def _default_nodes() -> tuple[Node, ...]:
    return (PullNode(), EventNode(), GeoNode(), CooldownNode(), IntentNode(), FallbackNode())


class PolicyDoc(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The decision ladder as stored and served; `mode: fallback` is the kill switch."""

    mode: Literal["normal", "fallback"] = "normal"
    nodes: tuple[Node, ...] = msgspec.field(default_factory=_default_nodes)


DEFAULT_POLICY = PolicyDoc()


class PolicyError(InvalidValue, ValueError):
    """A policy document that cannot be accepted; `field` names the node (e.g. "nodes[2]")."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message, field=field)


def parse_policy(raw: bytes | str | Mapping[str, Any]) -> PolicyDoc:
    """Validate a policy document, or raise `PolicyError` naming the bad node or field."""
    try:
        if isinstance(raw, bytes | str):
            doc = msgspec.json.decode(raw, type=PolicyDoc)
        else:
            doc = msgspec.convert(dict(raw), PolicyDoc)
    except msgspec.ValidationError as e:
        raise PolicyError(f"policy: {e}", field_of(str(e))) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise MalformedJSON("body is not valid JSON") from None
    seen: dict[str, int] = {}
    for i, node in enumerate(doc.nodes):
        kind = _kind(node)
        if kind in seen:
            raise PolicyError(
                f"node {kind!r} appears twice (first at nodes[{seen[kind]}])", f"nodes[{i}].type"
            )
        seen[kind] = i
        if isinstance(node, FrequencyCapNode) and node.per_hour is None and node.per_day is None:
            raise PolicyError("frequency_cap needs per_hour or per_day", f"nodes[{i}]")
        if isinstance(node, FallbackNode) and len(set(node.triggers)) != len(node.triggers):
            raise PolicyError("fallback triggers must be distinct", f"nodes[{i}].triggers")
        if isinstance(node, QuietHoursNode) and node.start_hour == node.end_hour:
            raise PolicyError("quiet_hours needs start_hour != end_hour", f"nodes[{i}].end_hour")
    if not doc.nodes or not isinstance(doc.nodes[-1], FallbackNode):
        raise PolicyError(
            "the ladder must end with the fallback node (it always decides)",
            f"nodes[{max(len(doc.nodes) - 1, 0)}]",
        )
    return doc


def policy_to_json(doc: PolicyDoc) -> dict[str, Any]:
    """Return the document as JSON-ready builtins (every parameter spelled out, except a
    fallback node's `triggers` when they are the default: documents read as they always did)."""
    out: dict[str, Any] = msgspec.to_builtins(doc)
    for node in out["nodes"]:
        if node["type"] == "fallback":
            if tuple(node["triggers"]) == DEFAULT_FALLBACK_TRIGGERS:
                del node["triggers"]
            else:
                node["triggers"] = list(node["triggers"])
    return out


def _kind(node: Node) -> str:
    return str(type(node).__struct_config__.tag)


def standard_policy(
    *,
    kind: Literal["intent", "fixed"] = "intent",
    threshold: float = C.DEFAULT_THRESHOLD,
    min_interval_s: int = C.MIN_INTERVAL_S,
    fallback_interval_s: int = C.FALLBACK_INTERVAL_S,
    explore_share: float = 0.0,
    explore_refresh_share: float = 0.5,
    explore_seed: str = "refreshd",
    fallback_triggers: tuple[Trigger, ...] = DEFAULT_FALLBACK_TRIGGERS,
) -> PolicyDoc:
    """Return the default ladder with its knobs set (`fixed`: no intent node; `fallback_triggers`:
    the fallback node's triggers)."""
    nodes: list[Node] = [
        PullNode(),
        EventNode(),
        GeoNode(),
        CooldownNode(min_interval_s=min_interval_s),
    ]
    if kind == "intent":
        nodes.append(
            IntentNode(
                threshold=threshold,
                explore_share=explore_share,
                explore_refresh_share=explore_refresh_share,
                explore_seed=explore_seed,
            )
        )
    nodes.append(FallbackNode(interval_s=fallback_interval_s, triggers=fallback_triggers))
    return PolicyDoc(nodes=tuple(nodes))


@dataclasses.dataclass(frozen=True, slots=True)
class Ladder:
    """A policy document compiled for one decision: the nodes and the knobs they share."""

    nodes: tuple[Node, ...]
    kill_switch: bool
    min_interval_s: int  # the cooldown node's (its default when the ladder has none)
    interval_s: int  # the fallback node's: when to look again after a refresh
    cap: FrequencyCapNode | None
    intent: IntentNode | None


@functools.lru_cache(maxsize=256)
def ladder_for(doc: PolicyDoc, params: VariantParams | None = None) -> Ladder:
    """Compile a document, with an experiment variant's overrides applied (cached: both are
    immutable, and a worker decides with a handful of combinations)."""
    nodes = list(doc.nodes)
    if params is not None:
        nodes = _override(nodes, params)
    cooldown = next((n for n in nodes if isinstance(n, CooldownNode)), None)
    fallback = next(n for n in nodes if isinstance(n, FallbackNode))
    cap = next((n for n in nodes if isinstance(n, FrequencyCapNode)), None)
    return Ladder(
        nodes=tuple(nodes),
        kill_switch=doc.mode == "fallback",
        min_interval_s=cooldown.min_interval_s if cooldown is not None else C.MIN_INTERVAL_S,
        interval_s=fallback.interval_s,
        cap=cap,
        intent=next((n for n in nodes if isinstance(n, IntentNode)), None),
    )


def _override(nodes: list[Node], p: VariantParams) -> list[Node]:
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, IntentNode):
            if p.policy == "fixed":
                continue  # the control arm of a threshold test: the fallback rule decides
            if p.threshold is not None:
                n = msgspec.structs.replace(n, threshold=p.threshold)
        elif isinstance(n, FallbackNode):
            if p.policy == "intent" and not any(isinstance(m, IntentNode) for m in nodes):
                thr = C.DEFAULT_THRESHOLD if p.threshold is None else p.threshold
                out.append(IntentNode(threshold=thr))
            if p.fallback_interval_s is not None:
                n = msgspec.structs.replace(n, interval_s=p.fallback_interval_s)
        out.append(n)
    return out
