"""Threshold experiments: the config model, its validation, and GrowthBook-identical assignment.

An experiment is the body of `PUT /v1/experiments/{id}` (docs/api.md). `parse_experiment` turns
it into a frozen `ExperimentConfig` or raises `ExperimentError` naming the offending field (a
422). `assign` buckets a user exactly as a GrowthBook SDK running the same experiment would:
FNV-1a 32-bit hashing (versions 1 and 2), namespaces, coverage and weights, so an experiment
defined here can be analysed next to (or migrated to) GrowthBook without reshuffling users.

Assignment rules, in GrowthBook's order:

- only a `running` experiment assigns; `draft` and `stopped` ones put nobody in the experiment
  (GrowthBook skips drafts and, for stopped experiments, serves the control without tracking);
- an empty `user_id` is never in an experiment;
- a namespace `[name, start, end]` admits users whose `gb_hash("__" + name, user_id, 1)` lies in
  `[start, end)`;
- the bucket hash is `gb_hash(seed or experiment_id, user_id, hash_version)`; an empty seed
  falls back to the id as GrowthBook's `seed or key` does; an unknown hash version assigns
  nobody (GrowthBook SDKs behave the same; `parse_experiment` rejects it up front anyway);
- variant `i` owns `[c_i, c_i + coverage * w_i)` with `c_i` the cumulative weight before it, so
  lowering coverage shrinks every range without moving any user to another variant.

Changing weights, seed or hash version of a running experiment reassigns users; the shell
refuses it unless the experiment is sticky: then exposed users keep their recorded variant
(GrowthBook sticky bucketing) until `bucket_version` changes, and only new users see the new
weights.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta

from refreshd import constants as C
from refreshd.core.errors import InvalidValue, MalformedJSON

__all__ = [
    "GUARDRAIL_METRICS",
    "METRICS",
    "Assignment",
    "ExperimentConfig",
    "ExperimentError",
    "Prior",
    "StatsConfig",
    "Variant",
    "VariantParams",
    "assign",
    "bucket_ranges",
    "choose_variation",
    "decode_body",
    "experiment_to_json",
    "fnv1a32",
    "gb_hash",
    "in_namespace",
    "parse_experiment",
    "variant_weights",
]

Metric = Literal["refresh_requests", "clicks", "converted", "pvctr", "uvctr"]
# Report order; definitions in refreshd.expstats.
METRICS: tuple[Metric, ...] = get_args(Metric)
Status = Literal["draft", "running", "stopped"]
# What a guardrail may watch: the experiment metrics and the service's own costs (definitions
# in refreshd.core.expstats).
GuardrailMetric = Literal[
    "refresh_requests", "clicks", "converted", "pvctr", "uvctr",
    "location_fixes", "decision_latency_ms", "error_responses",
]  # fmt: skip
GUARDRAIL_METRICS: tuple[str, ...] = get_args(GuardrailMetric)

# Weights must sum to 1 within this; GrowthBook's SDK silently falls back to equal weights
# outside [0.99, 1.01], so rejecting anything looser keeps our buckets and theirs identical.
WEIGHT_SUM_TOLERANCE = 1e-6
# A threshold gradient is a handful of arms; 20 bounds the stats hash and the report.
MAX_VARIANTS = 20
# A week: a "fallback" interval longer than that is no refresh at all.
MAX_FALLBACK_INTERVAL_S = 7 * 86_400
# Seeds and namespace names are free text in GrowthBook; bound them like any stored string.
MAX_SEED_LEN = 256
# The pre-period CUPED can look back over: the per-user daily activity the state keeps.
MAX_CUPED_LOOKBACK_DAYS = 7

T = TypeVar("T")
Key = Annotated[str, Meta(min_length=1, max_length=64, pattern=C.ID_PATTERN)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]


class ExperimentError(InvalidValue, ValueError):
    """An experiment body that cannot be accepted; `field` names where (e.g. "weights")."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message, field=field)


class VariantParams(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """What a variant changes in the decision policy; unset means the service default."""

    threshold: Unit | None = None
    fallback_interval_s: Annotated[int, Meta(ge=0, le=MAX_FALLBACK_INTERVAL_S)] | None = None
    policy: Literal["intent", "fixed"] | None = None


class Variant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: Key
    params: VariantParams = msgspec.field(default_factory=VariantParams)


class Prior(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Bayesian engine's Gaussian prior on the relative lift (gbstats' metric defaults).

    Improper (`proper: false`, the default) ignores mean and stddev: the posterior is the data's
    normal approximation. A proper prior shrinks lifts towards `mean`.
    """

    proper: bool = False
    mean: Annotated[float, Meta(ge=-1e6, le=1e6)] = 0.0
    stddev: Annotated[float, Meta(gt=0.0, le=1e6)] = 0.1


class StatsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the report analyses the experiment; the defaults are the report of before (issue 20).

    Analysis only: any of these may change while the experiment runs. `cuped_lookback_days`
    applies to users exposed after the change (each user's covariate is fixed at exposure).
    """

    engine: Literal["frequentist", "bayesian"] = "frequentist"
    alpha: Annotated[float, Meta(gt=0.0, le=0.5)] = 0.05
    cuped: bool = False
    cuped_lookback_days: Annotated[int, Meta(ge=1, le=MAX_CUPED_LOOKBACK_DAYS)] = 7
    sequential: bool = False
    sequential_tuning: Annotated[float, Meta(gt=0.0, le=1e12)] = 5000.0
    correction: Literal["holm-bonferroni", "benjamini-hochberg"] | None = None
    prior: Prior = msgspec.field(default_factory=Prior)
    # The relative lift the report's "users needed per arm" is computed for.
    target_effect: Annotated[float, Meta(gt=0.0, le=100.0)] = 0.05


class ExperimentConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A validated experiment; build it with `parse_experiment`, not directly."""

    variants: list[Variant]
    seed: Annotated[str, Meta(max_length=MAX_SEED_LEN)] | None = None
    hash_version: Literal[1, 2] = 2
    coverage: Unit = 1.0
    weights: list[float] | None = None
    namespace: tuple[Annotated[str, Meta(max_length=MAX_SEED_LEN)], float, float] | None = None
    hash_attribute: Literal["user_id"] = "user_id"
    metrics: list[Metric] = msgspec.field(default_factory=lambda: list(METRICS))
    status: Status = "draft"
    stats: StatsConfig = msgspec.field(default_factory=StatsConfig)
    # Metrics that must not get worse: the report flags an arm whose CI excludes 0 the bad way.
    guardrails: list[GuardrailMetric] = msgspec.field(default_factory=list)
    # GrowthBook sticky bucketing: an exposed user keeps their variant when weights or coverage
    # change; a new bucket_version voids every record (users go where hashing puts them).
    sticky: bool = False
    bucket_version: Annotated[int, Meta(ge=0, le=2**31 - 1)] = 0


class Assignment(msgspec.Struct, frozen=True):
    """Where a user falls: `hash` is the bucket hash when one was computed, else None;
    `sticky` says the variant came from the user's sticky record, not from hashing."""

    in_experiment: bool
    variant: str | None = None
    hash: float | None = None
    variation_id: int | None = None
    sticky: bool = False


_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]+)`")


def field_of(message: str) -> str | None:
    path = _PATH.search(message)
    named = _NAMED.search(message)
    parts = [p for p in (path.group("path") if path else "", named and named.group("name")) if p]
    return ".".join(parts) or None


def parse_experiment(exp_id: str, raw: bytes | str | Mapping[str, Any]) -> ExperimentConfig:
    """Validate an experiment body and return the config, or raise `ExperimentError`.

    `raw` is the JSON body or an already decoded object; undecodable bytes raise
    `MalformedJSON` (400) instead, as every other endpoint does.
    """
    cfg = decode_body("experiment", exp_id, raw, ExperimentConfig)
    _check(cfg)
    return cfg


def decode_body(what: str, item_id: str, raw: bytes | str | Mapping[str, Any], typ: type[T]) -> T:
    """Decode a body (JSON or already decoded) into `typ`: `ExperimentError` naming the field
    for a bad value, `MalformedJSON` for bytes that are not JSON."""
    try:
        if isinstance(raw, bytes | str):
            return msgspec.json.decode(raw, type=typ)
        return msgspec.convert(raw, typ)
    except msgspec.ValidationError as e:
        raise ExperimentError(f"{what} {item_id}: {e}", field_of(str(e))) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise MalformedJSON("body is not valid JSON") from None


def _check(cfg: ExperimentConfig) -> None:
    n = len(cfg.variants)
    if n < 2:
        raise ExperimentError("an experiment needs at least 2 variants", "variants")
    if n > MAX_VARIANTS:
        raise ExperimentError(f"at most {MAX_VARIANTS} variants", "variants")
    seen: set[str] = set()
    for i, v in enumerate(cfg.variants):
        if v.key in seen:
            raise ExperimentError(f"duplicate variant key {v.key!r}", f"variants[{i}].key")
        seen.add(v.key)
    if cfg.weights is not None:
        if len(cfg.weights) != n:
            raise ExperimentError(f"weights needs {n} values, one per variant", "weights")
        for i, w in enumerate(cfg.weights):
            if not math.isfinite(w) or w < 0:
                raise ExperimentError("weights must be finite and >= 0", f"weights[{i}]")
        if abs(math.fsum(cfg.weights) - 1.0) > WEIGHT_SUM_TOLERANCE:
            raise ExperimentError(f"weights sum to {math.fsum(cfg.weights)}, not 1", "weights")
    if cfg.namespace is not None:
        _, start, end = cfg.namespace
        if not (0.0 <= start < end <= 1.0):
            raise ExperimentError("namespace needs 0 <= start < end <= 1", "namespace")
    if not cfg.metrics:
        raise ExperimentError("metrics must name at least one metric", "metrics")
    if len(set(cfg.metrics)) != len(cfg.metrics):
        raise ExperimentError("metrics must not repeat", "metrics")
    if len(set(cfg.guardrails)) != len(cfg.guardrails):
        raise ExperimentError("guardrails must not repeat", "guardrails")


def experiment_to_json(cfg: ExperimentConfig) -> dict[str, Any]:
    """Return the canonical JSON object of a config (defaults filled in)."""
    out: dict[str, Any] = msgspec.to_builtins(cfg)
    if cfg.namespace is not None:
        out["namespace"] = list(cfg.namespace)
    return out


def variant_weights(cfg: ExperimentConfig) -> list[float]:
    """Return the weights bucketing uses: the configured ones or equal weights."""
    n = len(cfg.variants)
    return list(cfg.weights) if cfg.weights is not None else [1 / n] * n


# --- GrowthBook hashing and bucketing (mirrors growthbook-python's core.py) ---

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a32(s: str) -> int:
    """Return the 32-bit FNV-1a hash of `s` over UTF-16 code units, as the JS SDK's loop does.

    For ASCII that is the same as hashing the bytes; beyond it GrowthBook hashes `charCodeAt`
    values, so a non-ASCII id lands where every GrowthBook SDK puts it.
    """
    h = _FNV_OFFSET
    if s.isascii():
        for b in s.encode():
            h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFF
        return h
    data = s.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = ((h ^ (data[i] | (data[i + 1] << 8))) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """Return GrowthBook's bucket hash in [0, 1), or None for an unknown hash version."""
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def in_namespace(user_id: str, namespace: tuple[str, float, float]) -> bool:
    """Return whether the user falls in the namespace's `[start, end)` slice."""
    name, start, end = namespace
    n = gb_hash("__" + name, user_id, 1)
    return n is not None and start <= n < end


def bucket_ranges(
    num_variations: int, coverage: float = 1.0, weights: list[float] | None = None
) -> list[tuple[float, float]]:
    """Return each variation's hash range, as GrowthBook's `getBucketRanges` does.

    Coverage is clamped to [0, 1]; weights that are not one finite non-negative value per
    variation summing to within [0.99, 1.01] are replaced by equal weights, as in the SDK.
    """
    coverage = min(max(coverage, 0.0), 1.0)
    ws = weights if _usable_weights(weights, num_variations) else None
    if ws is None:
        ws = [1 / num_variations] * num_variations if num_variations > 0 else []
    cumulative = 0.0
    ranges = []
    for w in ws:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def _usable_weights(weights: list[float] | None, n: int) -> bool:
    if weights is None or len(weights) != n:
        return False
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        return False
    return 0.99 <= sum(weights) <= 1.01


def choose_variation(n: float, ranges: list[tuple[float, float]]) -> int:
    """Return the index of the range holding `n`, or -1 when none does."""
    for i, (lo, hi) in enumerate(ranges):
        if lo <= n < hi:
            return i
    return -1


_OUT = Assignment(in_experiment=False)


def assign(
    exp_id: str, cfg: ExperimentConfig, user_id: str, sticky: tuple[str, int] | None = None
) -> Assignment:
    """Return the user's assignment; deterministic, and identical to GrowthBook's.

    `sticky` is the user's record in this experiment, (variant, bucket version), if any. With
    `cfg.sticky` a record of the current bucket version whose variant still exists wins over
    namespace, coverage and hashing, as GrowthBook's sticky bucket does.
    """
    if cfg.status != "running" or not user_id:
        return _OUT
    if cfg.sticky and sticky is not None and sticky[1] == cfg.bucket_version:
        for i, v in enumerate(cfg.variants):
            if v.key == sticky[0]:
                return Assignment(in_experiment=True, variant=v.key, variation_id=i, sticky=True)
    if cfg.namespace is not None and not in_namespace(user_id, cfg.namespace):
        return _OUT
    n = gb_hash(cfg.seed or exp_id, user_id, cfg.hash_version)
    if n is None:
        return _OUT
    i = choose_variation(n, bucket_ranges(len(cfg.variants), cfg.coverage, cfg.weights))
    if i < 0:
        return Assignment(in_experiment=False, hash=n)
    return Assignment(in_experiment=True, variant=cfg.variants[i].key, hash=n, variation_id=i)
