"""The request flows, sans I/O: what one contact of a device changes and answers.

For each contact — decide, location, events, and the scheduler's sweep — a pure function takes
the user's loaded state and stored directives, the request, an immutable `Config` snapshot
(rules, experiments, fences, the policy document) and `now_ms`, and returns an `Outcome`: the
`Effects` to commit atomically and the answer to send once they are committed. Decide is the
one flow that may need the model: `prepare_decide` walks the policy ladder and says whether a
score can change the answer (and with which features); the caller scores, then
`finish_decide` completes the decision (the pattern of h11's `NEED_DATA` or httpx's auth flows).

The service (`refreshd.live.service`) locks, loads, scores, commits with compare-and-set and
responds; the simulator's fast mode (`client_sim.cloud`) calls these same functions on the
memory store, so what the simulator measures is what the service does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from geo import FenceIndex, Fix, LocateResult, locate
from intent.events import add_events
from intent.features import FEATURES_VERSION, Context, compute, feature_ages
from refreshd import constants as C
from refreshd.core.activity import add_clicks, add_decision
from refreshd.core.directives import Pending, settle
from refreshd.core.errors import InvalidValue
from refreshd.core.experiments import ExperimentConfig, VariantParams
from refreshd.core.exposure import Increment, choose, record_decision, record_events, record_fix
from refreshd.core.holdouts import GENERAL, held_out
from refreshd.core.ladder import Decision, Opportunity, Scored, walk
from refreshd.core.matcher import MatchResult, advance, feed, next_deadline
from refreshd.core.messages import (
    CoverageOut,
    DecideRequest,
    DecideResponse,
    Directive,
    EventsRequest,
    EventsResponse,
    Exposure,
    LocationRequest,
    LocationResponse,
    TransitionOut,
)
from refreshd.core.policy import DEFAULT_POLICY, IntentNode, Ladder, PolicyDoc, ladder_for
from refreshd.core.rules import RuleSet
from refreshd.core.state import UserState

__all__ = [
    "Config",
    "ConfigVersions",
    "DecidePlan",
    "DecisionLog",
    "Effects",
    "Loaded",
    "Outcome",
    "check_decide",
    "check_events",
    "check_ts",
    "decide_degraded",
    "events",
    "finish_decide",
    "location",
    "opportunity",
    "prepare_decide",
    "sweep",
]

A = TypeVar("A")
_HOUR_MS = 3_600_000


class ConfigVersions(msgspec.Struct, frozen=True, omit_defaults=True):
    """The store versions of the configuration a decision was made with (0: none stored)."""

    rules: int = 0
    experiments: int = 0
    fences: int = 0
    policy: int = 0


NO_VERSIONS = ConfigVersions()


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """The configuration one contact is decided with; the service snapshots its books."""

    rules: RuleSet
    experiments: Mapping[str, ExperimentConfig] = dataclasses.field(default_factory=dict)
    # The running holdouts, as the experiments they are counted as (`holdouts.as_experiment`),
    # by `holdouts.holdout_key`.
    holdouts: Mapping[str, ExperimentConfig] = dataclasses.field(default_factory=dict)
    fences: FenceIndex | None = None
    policy: PolicyDoc = DEFAULT_POLICY
    versions: ConfigVersions = NO_VERSIONS
    # The model the service scores with now (None: none loaded). Exploration decisions log it
    # (`serving_model`): their own answer needs no score, but a counterfactual replay asks
    # what that model would have decided.
    model_version: str | None = None
    # What the service always keeps and the simulator may skip where nothing reads it: log rows
    # of decisions and events (training, audit), the feature vector in each decision row (the
    # online/offline parity check; the simulator's training set recomputes features from the
    # events), and the recent-events window (only the intent features read it).
    logs: bool = True
    log_features: bool = True
    window: bool = True


class Loaded(msgspec.Struct, frozen=True):
    """A user as the store returned them."""

    state: UserState  # version 0: never written
    directives: Sequence[Directive] = ()  # as stored, expired ones too


class DecisionLog(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One row of the decision log: what training, audit and replay need of a decision.

    The request is kept field by field (`request_of` rebuilds it), and so is what the ladder
    read besides it — the last refresh, the refresh times a frequency cap counts, the refresh
    directives waiting, whether the position asked for a refresh, the variant's overrides — so
    a replay can walk the policy of the decision's time again without the user's state.
    The service stores rows without `decision_id`: the id is the row's place in the log.
    """

    decision_id: str = ""
    user_id: str
    ts: int
    trigger: str
    refresh: bool
    reason: str
    degraded: bool
    score: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None  # default | experiment | policy
    model_version: str | None = None
    experiment: str | None = None
    variant: str | None = None
    variant_params: dict[str, Any] | None = None  # the variant's overrides of the ladder
    lat: float | None = None
    lng: float | None = None
    tz_offset_min: int | None = None
    slots: list[str] | None = None
    ack: list[str] | None = None
    device_features: dict[str, float] | None = None  # the request's `features`
    received_ts: int | None = None  # server clock at decision time (point-in-time joins)
    last_refresh_ts: int | None = None  # before this decision (a feature's context)
    refresh_times: list[int] | None = None  # the refreshes a frequency cap counted
    event_slots: list[list[str] | None] | None = None  # waiting refresh directives' slots
    geo_refresh: bool = False
    zone: int | None = None
    # What the device reported of the visit (the features' context, rebuilt offline from these)
    launch: str | None = None
    home_dwell_s: float | None = None
    scrolls: int | None = None
    scroll_depth: float | None = None
    feature_version: str | None = None
    features: list[float] | None = None  # the vector the model saw (online/offline parity)
    feature_ages: list[float | None] | None = None  # s since each feature's newest event
    explore: bool = False  # a randomised intent decision (exploration traffic)
    propensity: float | None = None  # P(this answer) under the logging policy, when randomised
    serving_model: str | None = None  # explore rows: the model that would have scored them
    next_check_s: int | None = None
    degraded_reasons: list[str] = msgspec.field(default_factory=list)
    directives: list[str] = msgspec.field(default_factory=list)  # ids delivered with it
    config_versions: ConfigVersions = NO_VERSIONS


class Effects(msgspec.Struct, frozen=True, kw_only=True):
    """What one contact writes, all or nothing, and what the shell counts once it is written."""

    state: UserState  # version: the loaded one + 1
    delete_ids: list[str]  # acknowledged, expired, evicted directives
    new_directives: list[Directive]
    pending: list[Directive]  # the user's directives after the write (what answers carry)
    acknowledged: int = 0
    expired: int = 0
    matched: MatchResult | None = None
    due_ms: int | None = None  # when a waiting trailing-negation match needs a sweep
    batch_id: str | None = None
    decision_logs: list[DecisionLog] = msgspec.field(default_factory=list)
    event_logs: list[dict[str, Any]] = msgspec.field(default_factory=list)
    stat_incrs: list[Increment] = msgspec.field(default_factory=list)


class Outcome(msgspec.Struct, Generic[A], frozen=True):
    """Effects and the answer to send once they are committed (`duplicate`: the answer when
    the store finds the batch already accepted, and writes nothing)."""

    effects: Effects
    answer: A
    duplicate: A | None = None


# --- validation ----------------------------------------------------------------------------


def check_ts(ts: int, now_ms: int, field: str) -> None:
    """Reject timestamps from a broken device clock (far future) or from long ago."""
    if ts > now_ms + C.MAX_FUTURE_SKEW_MS:
        raise InvalidValue(
            f"timestamp {ts} is more than {C.MAX_FUTURE_SKEW_MS // 60_000} min in the future",
            field=field,
        )
    if ts < now_ms - C.MAX_PAST_AGE_MS:
        raise InvalidValue(
            f"timestamp {ts} is more than {C.MAX_PAST_AGE_MS // 86_400_000} days old", field=field
        )


def check_decide(req: DecideRequest, now_ms: int) -> None:
    check_ts(req.ts, now_ms, "ts")
    if (req.lat is None) != (req.lng is None):
        raise InvalidValue(
            "lat and lng must be given together", field="lat" if req.lat is None else "lng"
        )


def check_events(req: EventsRequest, now_ms: int) -> None:
    for i, event in enumerate(req.events):
        check_ts(event.ts, now_ms, f"events[{i}].ts")


# --- shared steps --------------------------------------------------------------------------


def _advance(cfg: Config, state: UserState, now_ms: int) -> MatchResult:
    return advance(cfg.rules, state.match, now_ms)


def _effects(
    state: UserState,
    p: Pending,
    cfg: Config,
    matched: MatchResult | None,
    **kw: Any,
) -> Effects:
    delete, after = settle(p)
    if p.seq != state.directive_seq:
        state = msgspec.structs.replace(state, directive_seq=p.seq)
    return Effects(
        state=state,
        delete_ids=delete,
        new_directives=p.new,
        pending=after,
        acknowledged=p.acknowledged(),
        expired=len(p.expired),
        matched=matched,
        due_ms=next_deadline(cfg.rules, state.match),
        **kw,
    )


def _u01(seed: str, uid: str, ts: int) -> tuple[float, float]:
    """Return two uniforms from (seed, user, ts): the same draw wherever the flow runs."""
    h = hashlib.blake2b(f"{seed}\x00{uid}\x00{ts}".encode(), digest_size=16).digest()
    return (int.from_bytes(h[:8], "big") >> 11) / 2**53, (
        int.from_bytes(h[8:], "big") >> 11
    ) / 2**53


# --- decide --------------------------------------------------------------------------------


class DecidePlan(msgspec.Struct, frozen=True):
    """A decide request with everything done but the score: `needs_score` says whether a score
    can change the answer, `features` is what to score (also logged)."""

    req: DecideRequest
    decision_id: str
    now_ms: int
    cfg: Config
    expected_version: int
    state: UserState  # rules advanced, the request's position applied
    pending: Pending
    matched: MatchResult
    ladder: Ladder
    opportunity: Opportunity
    experiment: tuple[str, str] | None  # (id, variant)
    params: VariantParams | None  # the variant's overrides of the ladder
    features: list[float] | None
    needs_score: bool
    zone: int | None
    decided: Decision | None  # what the ladder decided without a score, if it did


def prepare_decide(
    loaded: Loaded, req: DecideRequest, cfg: Config, *, now_ms: int, decision_id: str
) -> DecidePlan:
    """Run the decide flow up to the score."""
    state = loaded.state
    p = Pending.of(loaded.directives, req.ack, seq=state.directive_seq, now_ms=now_ms)
    matched = _advance(cfg, state, now_ms)
    p.fire(matched.fired, now_ms)
    state = msgspec.structs.replace(state, match=matched.state)
    geo = _decide_fix(state, req, cfg)
    if geo is not None:
        state = msgspec.structs.replace(state, geo=geo.new_geo_state)
    # A held-out user is in no experiment: the holdout's arm (the fixed rule) decides.
    held = held_out(cfg.holdouts, req.user_id) if cfg.holdouts else None
    chosen = held or choose(cfg.experiments, req.user_id, state.exp)
    params: VariantParams | None = None
    experiment: tuple[str, str] | None = None
    if chosen is not None:
        exp_id, exp_cfg, assignment = chosen
        variant = assignment.variant or ""
        params = next(v.params for v in exp_cfg.variants if v.key == variant)
        experiment = (exp_id, variant)
    ladder, opp = opportunity(
        state,
        req,
        p.unacked() + p.new,
        geo_refresh=geo is not None and geo.refresh,
        policy=cfg.policy,
        params=params,
        in_experiment=experiment is not None,
    )
    decided = walk(ladder, opp, None)
    needs = decided is None
    zone = int(state.geo.zone) if state.geo is not None else None
    features = None
    if req.trigger != "pull" and (needs or (cfg.logs and cfg.log_features)):
        ctx = Context(
            trigger=req.trigger,
            tz_offset_min=req.tz_offset_min,
            zone=zone,
            last_refresh_ts=state.last_refresh_ts,
            launch=req.launch,
            home_dwell_s=req.home_dwell_s,
            scrolls=req.scrolls,
            scroll_depth=req.scroll_depth,
        )
        features = compute(state.recent, req.ts, ctx)
    return DecidePlan(
        req,
        decision_id,
        now_ms,
        cfg,
        loaded.state.version,
        state,
        p,
        matched,
        ladder,
        opp,
        experiment,
        params,
        features,
        needs,
        zone,
        decided,
    )


def opportunity(
    state: UserState,
    req: DecideRequest,
    directives: Sequence[Directive],
    *,
    geo_refresh: bool,
    policy: PolicyDoc,
    params: VariantParams | None,
    in_experiment: bool,
) -> tuple[Ladder, Opportunity]:
    """Compile the ladder and build the opportunity it walks: one function for the decide
    flow and for a replay of its log row, so both walk the same ladder over the same inputs.

    Users outside experiments may be exploration traffic (the intent node's `explore_share`);
    an experiment's users never are, so its arms stay comparable.
    """
    ladder = ladder_for(policy, params)
    explore = None
    node = ladder.intent
    if not in_experiment and node is not None and node.explore_share > 0:
        explore = _explore_draw(node, req)
    opp = Opportunity(
        state=state, req=req, directives=directives, geo_refresh=geo_refresh, explore=explore
    )
    return ladder, opp


def _explore_draw(node: IntentNode, req: DecideRequest) -> float | None:
    pick, draw = _u01(node.explore_seed, req.user_id, req.ts)
    return draw if pick < node.explore_share else None


def _decide_fix(state: UserState, req: DecideRequest, cfg: Config) -> LocateResult | None:
    """Treat a decide request's position as a fix (its accuracy is not reported)."""
    if req.lat is None or req.lng is None or cfg.fences is None:
        return None
    fix = Fix(lat=req.lat, lng=req.lng, accuracy_m=C.DECIDE_FIX_ACCURACY_M, ts_ms=req.ts)
    result = locate(state.geo, cfg.fences, fix)
    return None if result.ignored else result


def _tracked(cfg: Config) -> Mapping[str, ExperimentConfig]:
    """Every experiment a user's totals count in: the experiments and the holdouts."""
    return {**cfg.experiments, **cfg.holdouts} if cfg.holdouts else cfg.experiments


def finish_decide(plan: DecidePlan, scored: Scored | None) -> Outcome[DecideResponse]:
    """Complete the decision with the model's answer (None: no score was needed)."""
    decision = plan.decided
    if decision is None:
        decision = walk(plan.ladder, plan.opportunity, scored or Scored())
        assert decision is not None
    req, state = plan.req, plan.state
    state = _after_decision(state, plan.ladder, req.ts, decision.refresh)
    incs: list[Increment] = []
    exposure = None
    arms = [plan.experiment] if plan.experiment is not None else []
    if plan.cfg.holdouts and (
        plan.experiment is None or plan.experiment[0] not in plan.cfg.holdouts
    ):
        # Everyone not held out is each holdout's general group.
        arms += [(key, GENERAL) for key in sorted(plan.cfg.holdouts)]
    tracked = _tracked(plan.cfg)
    for exp_id, variant in arms:
        exp_cfg = tracked[exp_id]
        exp_state, more = record_decision(
            state.exp,
            exp_id,
            variant,
            req.ts,
            decision.refresh,
            history=state.daily,
            lookback_days=exp_cfg.stats.cuped_lookback_days,
            bucket_version=exp_cfg.bucket_version,
        )
        incs += more
        state = msgspec.structs.replace(state, exp=exp_state)
    if plan.experiment is not None:
        exposure = Exposure(*plan.experiment)
    state = msgspec.structs.replace(state, version=plan.expected_version + 1)
    effects = _effects(state, plan.pending, plan.cfg, plan.matched, stat_incrs=incs)
    if plan.cfg.logs:
        effects.decision_logs.append(_decision_log(plan, decision, effects.pending))
    return Outcome(effects, response(plan.decision_id, decision, effects.pending, exposure))


def decide_degraded(req: DecideRequest, cfg: Config, *, decision_id: str) -> DecideResponse:
    """Decide without the store: as for a new user, by the ladder's rules that need no state."""
    decision = walk(
        ladder_for(cfg.policy),
        Opportunity(UserState(), req, ()),
        Scored(),
        degraded=("store_unavailable",),
    )
    assert decision is not None
    return response(decision_id, decision, [])


def response(
    decision_id: str,
    d: Decision,
    directives: list[Directive],
    exposure: Exposure | None = None,
) -> DecideResponse:
    return DecideResponse(
        decision_id=decision_id,
        refresh=d.refresh,
        reason=d.reason,
        score=d.score,
        threshold=d.threshold,
        experiment=exposure,
        model_version=d.model_version,
        next_check_s=d.next_check_s,
        directives=directives,
        degraded=bool(d.degraded_reasons),
        degraded_reasons=d.degraded_reasons,
        slots=d.slots if d.refresh else None,
    )


def _after_decision(state: UserState, ladder: Ladder, ts: int, refresh: bool) -> UserState:
    times = state.refresh_times
    if ladder.cap is not None:
        keep = max(ladder.cap.per_day or 0, ladder.cap.per_hour or 0)
        times = [t for t in times if t > ts - 24 * _HOUR_MS] + ([ts] if refresh else [])
        times = times[-keep:]
    elif times:
        times = []  # no cap any more: nothing to remember
    return msgspec.structs.replace(
        state,
        last_decision_ts=max(ts, state.last_decision_ts or 0),
        last_refresh_ts=max(ts, state.last_refresh_ts or 0) if refresh else state.last_refresh_ts,
        decisions=state.decisions + 1,
        refreshes=state.refreshes + (1 if refresh else 0),
        refresh_times=times,
        daily=add_decision(state.daily, ts, refresh),
    )


def _decision_log(plan: DecidePlan, d: Decision, delivered: Sequence[Directive]) -> DecisionLog:
    req, opp, cfg = plan.req, plan.opportunity, plan.cfg
    exp = plan.experiment
    params = plan.params
    logged = plan.features if cfg.log_features else None
    propensity = None
    if d.explore and plan.ladder.intent is not None:
        share = plan.ladder.intent.explore_refresh_share
        propensity = share if d.refresh else 1.0 - share
    event_slots = [x.slots for x in opp.directives if x.type == "refresh"] or None
    return DecisionLog(
        decision_id=plan.decision_id,
        user_id=req.user_id,
        ts=req.ts,
        trigger=req.trigger,
        refresh=d.refresh,
        reason=d.reason,
        degraded=bool(d.degraded_reasons),
        score=d.score,
        threshold=d.threshold,
        threshold_source=_threshold_source(d, params, cfg.versions),
        model_version=d.model_version,
        experiment=exp[0] if exp else None,
        variant=exp[1] if exp else None,
        variant_params=msgspec.to_builtins(params) if params is not None else None,
        lat=req.lat,
        lng=req.lng,
        tz_offset_min=req.tz_offset_min,
        slots=req.slots,
        ack=req.ack,
        device_features=req.features,
        received_ts=plan.now_ms,
        last_refresh_ts=plan.state.last_refresh_ts,
        refresh_times=list(plan.state.refresh_times) if plan.ladder.cap is not None else None,
        event_slots=event_slots,
        geo_refresh=opp.geo_refresh,
        zone=plan.zone,
        launch=req.launch,
        home_dwell_s=req.home_dwell_s,
        scrolls=req.scrolls,
        scroll_depth=req.scroll_depth,
        feature_version=FEATURES_VERSION if logged is not None else None,
        features=logged,
        feature_ages=_ages(plan) if logged is not None else None,
        explore=d.explore,
        propensity=propensity,
        serving_model=cfg.model_version if d.explore else None,
        next_check_s=d.next_check_s,
        degraded_reasons=list(d.degraded_reasons),
        directives=[x.id for x in delivered],
        config_versions=cfg.versions,
    )


def _ages(plan: DecidePlan) -> list[float | None]:
    """Each feature's age at the decision, to a tenth of a second (the audit's freshness)."""
    ages = feature_ages(plan.state.recent, plan.req.ts)
    return [None if a is None else round(a, 1) for a in ages]


def _threshold_source(
    d: Decision, params: VariantParams | None, versions: ConfigVersions
) -> str | None:
    """Where the threshold came from: a variant's override, the stored policy, the default."""
    if d.threshold is None:
        return None
    if params is not None and params.threshold is not None and not d.explore:
        return "experiment"
    return "policy" if versions.policy > 0 else "default"


# --- location ------------------------------------------------------------------------------


def location(
    loaded: Loaded, req: LocationRequest, cfg: Config, *, now_ms: int
) -> Outcome[LocationResponse]:
    """Apply a location fix: transitions, zone, coverage circle, cadence, cards."""
    state = loaded.state
    p = Pending.of(loaded.directives, req.ack, seq=state.directive_seq, now_ms=now_ms)
    fix = Fix(
        lat=req.lat, lng=req.lng, accuracy_m=req.accuracy_m, ts_ms=req.ts, speed_mps=req.speed_mps
    )
    res = locate(state.geo, cfg.fences if cfg.fences is not None else _NO_FENCES, fix)
    matched = _advance(cfg, state, now_ms)
    p.fire(matched.fired, now_ms)
    if res.reclaim_cards:
        p.add("reclaim_cards", now_ms, source="geo", payload={"cards": list(res.reclaim_cards)})
    refresh = res.refresh and not res.ignored
    exp_state, incs = record_fix(state.exp, req.ts, _tracked(cfg)) if state.exp else ({}, [])
    state = msgspec.structs.replace(
        state,
        version=state.version + 1,
        geo=res.new_geo_state,
        match=matched.state,
        exp=exp_state,
        last_refresh_ts=max(req.ts, state.last_refresh_ts or 0)
        if refresh
        else state.last_refresh_ts,
        refreshes=state.refreshes + (1 if refresh else 0),
    )
    effects = _effects(state, p, cfg, matched, stat_incrs=incs)
    answer = LocationResponse(
        transitions=[TransitionOut(t.fence_id, t.type, t.ts_ms) for t in res.transitions],
        zone=int(res.zone),
        coverage=CoverageOut(res.coverage.lat, res.coverage.lng, res.coverage.radius_m),
        next_fix_s=res.next_fix_s,
        refresh=refresh,
        service_cards=list(res.service_cards),
        directives=effects.pending,
        ignored=res.ignored,
    )
    return Outcome(effects, answer)


_NO_FENCES = FenceIndex()


# --- events --------------------------------------------------------------------------------


def events(
    loaded: Loaded, req: EventsRequest, cfg: Config, *, now_ms: int
) -> Outcome[EventsResponse]:
    """Accept a batch of events: the recent window, the rules, the experiments' totals."""
    state = loaded.state
    p = Pending.of(loaded.directives, req.ack, seq=state.directive_seq, now_ms=now_ms)
    batch = req.events
    latest = max(e.ts for e in batch)
    matched = feed(cfg.rules, state.match, batch, now_ms)
    exp_state, incs = record_events(state.exp, batch, _tracked(cfg)) if state.exp else ({}, [])
    p.fire(matched.fired, now_ms)
    state = msgspec.structs.replace(
        state,
        version=state.version + 1,
        recent=add_events(state.recent, list(batch)) if cfg.window else state.recent,
        last_event_ts=max(latest, state.last_event_ts or 0),
        events=state.events + len(batch),
        match=matched.state,
        exp=exp_state,
        daily=add_clicks(state.daily, batch),
    )
    rows: list[dict[str, Any]] = []
    if cfg.logs:
        head = {"user_id": req.user_id, "batch_id": req.batch_id, "received_ts": now_ms}
        rows = [head | msgspec.to_builtins(e) for e in batch]
    effects = _effects(
        state, p, cfg, matched, batch_id=req.batch_id, event_logs=rows, stat_incrs=incs
    )
    return Outcome(
        effects,
        EventsResponse(len(batch), False, effects.pending),
        EventsResponse(0, True, list(p.live)),
    )


# --- sweep ---------------------------------------------------------------------------------


def sweep(loaded: Loaded, cfg: Config, *, now_ms: int) -> Outcome[int]:
    """Fire the trailing-negation matches of a user who has not been in touch; answer how many
    directives that queued."""
    state = loaded.state
    p = Pending.of(loaded.directives, (), seq=state.directive_seq, now_ms=now_ms)
    matched = _advance(cfg, state, now_ms)
    p.fire(matched.fired, now_ms)
    state = msgspec.structs.replace(state, version=state.version + 1, match=matched.state)
    effects = _effects(state, p, cfg, matched)
    return Outcome(effects, len(effects.new_directives))
