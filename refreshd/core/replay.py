"""Replay a logged decision: walk the ladder again over the inputs its log row kept.

A decision-log row (`refreshd.core.flow.DecisionLog`) keeps everything the ladder read: the
request, the last refresh, the refresh times a frequency cap counted, the refresh directives
waiting (rules and the API reach the ladder only through them), whether the position asked for
a refresh (fences reach it only through that), the experiment variant's overrides, the feature
vector and what the scorer answered. Given the policy document of the row's time and a scorer,
`replay` walks `refreshd.core.flow.opportunity`'s ladder again — the very function the decide
flow uses — so a faithful replay gives the logged decision bit for bit; `differences` names
what does not match.

The same walk answers counterfactuals: another policy document (a candidate threshold,
`with_threshold`) or another scorer (a candidate model). `explore=False` walks as if the
decision had not been exploration traffic: what the deterministic part of the policy would
have answered, which the off-policy estimators (`refreshd.core.offpolicy`) compare.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import msgspec

from intent.dataset import LABEL_HORIZON_S, EventLog
from refreshd.core import offpolicy
from refreshd.core.audit import request_of
from refreshd.core.experiments import VariantParams
from refreshd.core.flow import DecisionLog, opportunity
from refreshd.core.ladder import Decision, Scored, walk
from refreshd.core.messages import Directive
from refreshd.core.policy import IntentNode, PolicyDoc
from refreshd.core.state import UserState

__all__ = [
    "EXPLORE",
    "SCORER_REASONS",
    "SCORE_TOLERANCE",
    "Brief",
    "Candidate",
    "ClickChange",
    "Exploration",
    "Mismatch",
    "Predict",
    "ReplayReport",
    "Scorer",
    "as_logged",
    "differences",
    "replay",
    "replay_window",
    "with_model",
    "with_threshold",
]

# A replayed score matches the logged one within this (LightGBM is deterministic; the slack
# only absorbs the last bit of a float printed and parsed again).
SCORE_TOLERANCE = 1e-9
EXPLORE = "explore"  # the model_version of exploration decisions
# Degraded reasons that say the scorer did not answer (refreshd.live.service._score).
SCORER_REASONS = frozenset({"no_model", "scorer_failed", "scorer_timeout"})

# (model version, feature vector) → the model's score; None: that version cannot be loaded.
Predict = Callable[[str, Sequence[float]], float | None]
# A row → what the scorer answers for it (asked only when the intent node needs a score).
Scorer = Callable[[DecisionLog], Scored]


def _params(row: DecisionLog) -> VariantParams | None:
    if row.variant_params is None:
        return None
    return msgspec.convert(row.variant_params, VariantParams)


def _directives(row: DecisionLog) -> list[Directive]:
    """The refresh directives that were waiting, as the event node reads them (slots only)."""
    return [
        Directive(
            id=f"replay-{i}", type="refresh", created_ts=row.ts, expires_ts=row.ts + 1, slots=slots
        )
        for i, slots in enumerate(row.event_slots or ())
    ]


def replay(
    row: DecisionLog, policy: PolicyDoc, scorer: Scorer, *, explore: bool = True
) -> Decision:
    """Walk `policy`'s ladder over the row's logged inputs; ask `scorer` if a score is needed.

    `explore=False`: as if this decision had not been drawn for exploration.
    """
    state = UserState(last_refresh_ts=row.last_refresh_ts, refresh_times=row.refresh_times or [])
    ladder, opp = opportunity(
        state,
        request_of(row),
        _directives(row),
        geo_refresh=row.geo_refresh,
        policy=policy,
        params=_params(row),
        in_experiment=row.experiment is not None,
    )
    if not explore and opp.explore is not None:
        opp = msgspec.structs.replace(opp, explore=None)
    decision = walk(ladder, opp, None)
    if decision is None:
        decision = walk(ladder, opp, scorer(row))
    assert decision is not None
    return decision


def differences(row: DecisionLog, d: Decision) -> list[str]:
    """Name the fields in which a replayed decision differs from the logged one."""
    out = [
        name
        for name, a, b in (
            ("refresh", row.refresh, d.refresh),
            ("reason", row.reason, d.reason),
            ("threshold", row.threshold, d.threshold),
            ("model_version", row.model_version, d.model_version),
            ("next_check_s", row.next_check_s, d.next_check_s),
            ("degraded_reasons", sorted(row.degraded_reasons), d.degraded_reasons),
        )
        if a != b
    ]
    if (row.score is None) != (d.score is None) or (
        row.score is not None
        and d.score is not None
        and not math.isclose(row.score, d.score, rel_tol=0.0, abs_tol=SCORE_TOLERANCE)
    ):
        out.insert(2, "score")
    return out


def _score(predict: Predict, version: str, row: DecisionLog) -> Scored:
    if row.features is None:
        return Scored(reasons=("no_features",))
    score = predict(version, row.features)
    if score is None:
        return Scored(reasons=("model_unavailable",))
    return Scored(score=score, model_version=version)


def as_logged(predict: Predict) -> Scorer:
    """Return the scorer of the row's time: its model on its features, or — when the model did
    not answer then — the same silence, so the fallback decides again as it did."""

    def scorer(row: DecisionLog) -> Scored:
        version = row.model_version if row.model_version != EXPLORE else row.serving_model
        if version is None:
            causes = tuple(r for r in row.degraded_reasons if r in SCORER_REASONS)
            return Scored(reasons=causes or ("no_model",))
        return _score(predict, version, row)

    return scorer


def with_model(predict: Predict, version: str) -> Scorer:
    """Return a scorer that scores every row with one (candidate) model."""
    return lambda row: _score(predict, version, row)


def with_threshold(policy: PolicyDoc, threshold: float) -> PolicyDoc:
    """Return the document with its intent node's threshold set (a variant's override still
    wins for its users: an experiment tests its own thresholds)."""
    nodes = tuple(
        msgspec.structs.replace(n, threshold=threshold) if isinstance(n, IntentNode) else n
        for n in policy.nodes
    )
    return msgspec.structs.replace(policy, nodes=nodes)


# --- a window --------------------------------------------------------------------------------


class Brief(msgspec.Struct, frozen=True):
    """What a decision answered, in short."""

    refresh: bool
    reason: str
    score: float | None
    model_version: str | None


class Mismatch(msgspec.Struct, frozen=True):
    """A decision the replay did not reproduce, and how."""

    decision_id: str
    fields: list[str]  # what differs ("policy_version": its document is no longer kept)
    logged: Brief
    replayed: Brief | None


class Candidate(msgspec.Struct, frozen=True):
    model: str | None = None
    threshold: float | None = None


class Exploration(msgspec.Struct, frozen=True):
    """The randomised decisions the click estimate rests on."""

    decisions: int  # exploration decisions in the window
    mature: int  # their click window had closed at replay time: these are the samples
    immature: int  # still open: left out
    unscored: int  # mature, but no model or features to say what either policy answers
    flipped: int  # samples where the candidate answers otherwise than the deployed policy


class ClickChange(msgspec.Struct, frozen=True):
    """An estimated change in clicks, with 95 % CIs (refreshd.core.offpolicy)."""

    method: str  # "ips" | "snips"
    per_decision: float
    per_decision_ci: tuple[float, float]
    clicks: float  # per_decision × population
    clicks_ci: tuple[float, float]
    relative: float | None  # clicks / window_clicks
    relative_ci: tuple[float, float] | None


class ReplayReport(msgspec.Struct, kw_only=True):
    since: int
    until: int
    decisions: int
    reproduced: int
    reproduced_share: float | None
    not_reproduced: list[Mismatch]  # the first MAX_MISMATCHES
    policy_versions: list[int]
    model_versions: list[str]
    candidate: Candidate | None = None
    flipped: int | None = None
    flipped_share: float | None = None
    refreshes: int | None = None
    candidate_refreshes: int | None = None
    refresh_rate_change: float | None = None  # candidate_refreshes / refreshes − 1
    after_change: int | None = None  # later in a visit whose answer changed: taken as logged
    population: int | None = None  # the decisions the click estimate scales to
    window_clicks: int | None = None  # clicks logged in the window
    exploration: Exploration | None = None
    estimated_click_change: ClickChange | None = None
    estimated_click_change_snips: ClickChange | None = None


MAX_MISMATCHES = 20
_UNSCORED = frozenset({"no_features", "model_unavailable"})


def _change(method: str, e: offpolicy.Estimate, population: int, clicks: int) -> ClickChange:
    total = e.scaled(population)
    rel = total.scaled(1.0 / clicks) if clicks else None
    return ClickChange(
        method=method,
        per_decision=e.value,
        per_decision_ci=e.ci,
        clicks=total.value,
        clicks_ci=total.ci,
        relative=rel.value if rel is not None else None,
        relative_ci=rel.ci if rel is not None else None,
    )


def replay_window(
    rows: Sequence[DecisionLog],
    policy_of: Callable[[int], PolicyDoc | None],
    predict: Predict,
    *,
    since: int,
    until: int,
    candidate: Candidate | None = None,
    events: EventLog | None = None,
    now_ms: int = 0,
) -> ReplayReport:
    """Replay every row with the versions of its time; with a candidate, estimate its effect.

    `policy_of(version)` is the policy document stored under that version (None: no longer
    kept). `events` (the event log) gives each decision its clicks — the label window of
    `intent.dataset`, counted only once it has closed by `now_ms` — and the visits: once the
    candidate answers a decision otherwise, the rest of that visit would not have been asked
    the same way, so its later decisions count as logged and neither as flips nor as samples.
    """
    logged = as_logged(predict)
    reproduced = 0
    mismatches: list[Mismatch] = []
    replayable: list[tuple[DecisionLog, PolicyDoc]] = []
    for row in rows:
        policy = policy_of(row.config_versions.policy)
        if policy is None:
            if len(mismatches) < MAX_MISMATCHES:
                brief = Brief(row.refresh, row.reason, row.score, row.model_version)
                mismatches.append(Mismatch(row.decision_id, ["policy_version"], brief, None))
            continue
        replayable.append((row, policy))
        d = replay(row, policy, logged)
        diff = differences(row, d)
        if not diff:
            reproduced += 1
        elif len(mismatches) < MAX_MISMATCHES:
            mismatches.append(
                Mismatch(
                    row.decision_id,
                    diff,
                    Brief(row.refresh, row.reason, row.score, row.model_version),
                    Brief(d.refresh, d.reason, d.score, d.model_version),
                )
            )
    n = len(rows)
    report = ReplayReport(
        since=since,
        until=until,
        decisions=n,
        reproduced=reproduced,
        reproduced_share=reproduced / n if n else None,
        not_reproduced=mismatches,
        policy_versions=sorted({r.config_versions.policy for r in rows}),
        model_versions=sorted(
            {v for r in rows for v in (r.model_version, r.serving_model) if v and v != EXPLORE}
        ),
    )
    if candidate is not None:
        _counterfactual(report, replayable, logged, predict, candidate, events, now_ms)
    return report


def _counterfactual(
    report: ReplayReport,
    replayable: list[tuple[DecisionLog, PolicyDoc]],
    logged: Scorer,
    predict: Predict,
    candidate: Candidate,
    events: EventLog | None,
    now_ms: int,
) -> None:
    """Fill in what the candidate changes (one step: each decision's inputs as logged)."""
    cand_scorer = logged if candidate.model is None else with_model(predict, candidate.model)
    by_user: dict[str, list[tuple[DecisionLog, PolicyDoc]]] = defaultdict(list)
    for row, policy in replayable:
        by_user[row.user_id].append((row, policy))
    flipped = refreshes = cand_refreshes = population = after = 0
    explore_n = immature = unscored = 0
    samples: list[offpolicy.Sample] = []
    for uid, items in by_user.items():
        items.sort(key=lambda x: x[0].ts)
        diverged_until: int | None = None
        for row, policy in items:
            refreshes += row.refresh
            if diverged_until is not None and row.ts < diverged_until:
                after += 1
                cand_refreshes += row.refresh
                continue
            cand_policy = policy
            if candidate.threshold is not None:
                cand_policy = with_threshold(policy, candidate.threshold)
            c = replay(row, cand_policy, cand_scorer)
            cand_refreshes += c.refresh
            if c.refresh != row.refresh:
                flipped += 1
                diverged_until = _visit_end(events, uid, row.ts)
            if row.explore and row.propensity is not None:
                explore_n += 1
                if events is None or row.ts + LABEL_HORIZON_S * 1000 > now_ms:
                    immature += 1
                    continue
                base = replay(row, policy, logged, explore=False)
                alt = replay(row, cand_policy, cand_scorer, explore=False)
                if _UNSCORED & {*base.degraded_reasons, *alt.degraded_reasons}:
                    unscored += 1
                    continue
                y = float(events.clicks(uid, row.ts))
                samples.append(
                    offpolicy.Sample(y, row.refresh, row.propensity, base.refresh, alt.refresh)
                )
            elif row.experiment is None and row.reason in ("intent", "no_intent"):
                population += 1
    n = report.decisions
    clicks = events.clicks_between(report.since, report.until) if events is not None else 0
    report.candidate = candidate
    report.flipped = flipped
    report.flipped_share = flipped / n if n else None
    report.after_change = after
    report.refreshes, report.candidate_refreshes = refreshes, cand_refreshes
    report.refresh_rate_change = cand_refreshes / refreshes - 1.0 if refreshes else None
    report.population, report.window_clicks = population, clicks
    report.exploration = Exploration(
        decisions=explore_n,
        mature=len(samples) + unscored,
        immature=immature,
        unscored=unscored,
        flipped=sum(s.baseline != s.candidate for s in samples),
    )
    if len(samples) > 1:
        ips, snips = offpolicy.ips_change(samples), offpolicy.snips_change(samples)
        report.estimated_click_change = _change("ips", ips, population, clicks)
        report.estimated_click_change_snips = _change("snips", snips, population, clicks)


def _visit_end(events: EventLog | None, uid: str, ts: int) -> int:
    if events is None:
        return ts + LABEL_HORIZON_S * 1000
    return events.session_end(uid, ts)
