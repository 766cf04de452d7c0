"""Holdouts: a share of users kept on the fixed rule and out of every experiment.

A holdout answers the question a single experiment cannot: what do all the threshold
experiments and the intent model together buy, against users who never got any of them? It is
the body of `PUT /v1/holdouts/{id}` (docs/api.md). A user is hashed like an experiment's
(GrowthBook's FNV-1a, version 2, seed `holdout:<id>` unless one is given): those whose hash
falls below `share` are held out: decided by the fixed rule (the fallback node, as an
experiment arm with `{"policy": "fixed"}`), never entered into an experiment, and never
exploration traffic. Everyone else is the holdout's `general` group.

For the statistics a holdout is an experiment of two arms, `holdout` (the baseline) and
`general`, weighted `[share, 1 - share]`: `as_experiment` builds it, so exposure, counting,
CUPED, guardrails and the report are the experiments' own. A user is exposed to a holdout at
their first decision while it runs, whatever experiment (if any) they then enter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from refreshd.core.experiments import (
    MAX_SEED_LEN,
    METRICS,
    Assignment,
    ExperimentConfig,
    GuardrailMetric,
    Metric,
    StatsConfig,
    Status,
    Variant,
    VariantParams,
    assign,
    decode_body,
    parse_experiment,
)

__all__ = [
    "GENERAL",
    "HELD",
    "PREFIX",
    "HoldoutConfig",
    "as_experiment",
    "held_out",
    "holdout_key",
    "holdout_to_json",
    "parse_holdout",
]

PREFIX = "holdout:"  # a holdout's key among the experiments a user's state records
HELD = "holdout"
GENERAL = "general"
# Half the users at most: a holdout is the minority kept back, not an arm of equals.
MAX_SHARE = 0.5


class HoldoutConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A validated holdout; build it with `parse_holdout`."""

    share: Annotated[float, Meta(gt=0.0, le=MAX_SHARE)]
    seed: Annotated[str, Meta(max_length=MAX_SEED_LEN)] | None = None
    status: Status = "running"
    metrics: list[Metric] = msgspec.field(default_factory=lambda: list(METRICS))
    stats: StatsConfig = msgspec.field(default_factory=StatsConfig)
    guardrails: list[GuardrailMetric] = msgspec.field(default_factory=list)


def holdout_key(holdout_id: str) -> str:
    return PREFIX + holdout_id


def parse_holdout(holdout_id: str, raw: bytes | str | Mapping[str, Any]) -> HoldoutConfig:
    """Validate a holdout body, or raise `ExperimentError` (a 422 naming the field)."""
    cfg = decode_body("holdout", holdout_id, raw, HoldoutConfig)
    # The report's checks (repeats, at least one metric) are the experiments'.
    as_experiment(holdout_id, cfg)
    return cfg


def holdout_to_json(cfg: HoldoutConfig) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(cfg)
    return out


def as_experiment(holdout_id: str, cfg: HoldoutConfig) -> ExperimentConfig:
    """The holdout as the two-arm experiment its users are counted in (holdout first)."""
    return parse_experiment(
        holdout_key(holdout_id),
        {
            "seed": cfg.seed or holdout_key(holdout_id),
            "status": cfg.status,
            "weights": [cfg.share, 1.0 - cfg.share],
            "variants": [
                msgspec.to_builtins(Variant(key=HELD, params=VariantParams(policy="fixed"))),
                {"key": GENERAL},
            ],
            "metrics": list(cfg.metrics),
            "stats": msgspec.to_builtins(cfg.stats),
            "guardrails": list(cfg.guardrails),
        },
    )


def held_out(
    holdouts: Mapping[str, ExperimentConfig], user_id: str
) -> tuple[str, ExperimentConfig, Assignment] | None:
    """Return the first running holdout (by key) that holds this user out, else None.

    `holdouts` maps `holdout_key(id)` to `as_experiment(id, cfg)`.
    """
    for key in sorted(holdouts):
        cfg = holdouts[key]
        a = assign(key, cfg, user_id)
        if a.variant == HELD:
            return key, cfg, a
    return None
