"""Replay a window of the decision log: read it, load the versions of its time, run, report.

The thinking is `refreshd.core.replay.replay_window`; this shell reads the window's rows (the
newest `LOOKBACK_ROWS` of the capped log, filtered by decision `ts`), the models they were
scored with and the candidate (`store.get_model`), the policy documents by version
(`store.get_config_at`; version 0 is the settings' default ladder *as configured now*), and,
for a counterfactual, the event log that labels each decision's clicks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec

from intent.dataset import LABEL_HORIZON_S, SESSION_GAP_S, EventLog
from intent.model import IntentModel
from refreshd import constants as C
from refreshd.core.errors import InvalidValue, NotFound
from refreshd.core.flow import DecisionLog
from refreshd.core.policy import PolicyDoc, PolicyError, parse_policy
from refreshd.core.replay import EXPLORE, Candidate, ReplayReport, replay_window
from refreshd.live.policybook import KIND as POLICY_KIND
from refreshd.live.service import default_policy
from refreshd.live.training import MAX_LOG_ROWS
from refreshd.settings import Settings
from refreshd.store.protocol import LOG_DECISIONS, LOG_EVENTS, Store

__all__ = ["LOOKBACK_ROWS", "run_replay"]

log = logging.getLogger(__name__)
# How far back a window may lie: the rows training reads (the log is capped anyway).
LOOKBACK_ROWS = MAX_LOG_ROWS
_row = msgspec.json.Decoder(DecisionLog)
_event = msgspec.json.Decoder()


def check_window(since: int, until: int, threshold: float | None) -> None:
    if since >= until:
        raise InvalidValue(f"since ({since}) must be before until ({until})", field="until")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise InvalidValue("threshold must be in [0, 1]", field="threshold")


async def _load_models(store: Store, versions: set[str]) -> dict[str, IntentModel | None]:
    out: dict[str, IntentModel | None] = {}
    for v in sorted(versions):
        stored = await store.get_model(v)
        if stored is None:
            out[v] = None
            continue
        try:
            out[v] = await asyncio.to_thread(IntentModel.from_text, stored[0], version=v)
        except Exception as exc:  # its rows are reported as not reproduced, with the cause
            log.warning("replay: cannot load model %s: %s", v, exc)
            out[v] = None
    return out


async def _load_policies(
    store: Store, settings: Settings, versions: set[int]
) -> dict[int, PolicyDoc | None]:
    out: dict[int, PolicyDoc | None] = {}
    for v in sorted(versions):
        if v == 0:  # never written: the settings' ladder, as the settings say today
            out[v] = default_policy(settings)
            continue
        blob = await store.get_config_at(POLICY_KIND, v)
        try:
            out[v] = parse_policy(blob) if blob is not None else None
        except PolicyError as exc:
            log.warning("replay: stored policy v%d no longer parses: %s", v, exc)
            out[v] = None
    return out


def _in_window(blobs: Sequence[bytes], since: int, until: int) -> list[DecisionLog]:
    rows = [_row.decode(b) for b in blobs]
    return [r for r in rows if since <= r.ts < until]


async def run_replay(
    store: Store,
    settings: Settings,
    *,
    since: int,
    until: int,
    now_ms: int,
    model: str | None = None,
    threshold: float | None = None,
) -> ReplayReport:
    """Replay the decisions with `since <= ts < until`; with a candidate model or threshold,
    also estimate what it would change."""
    check_window(since, until, threshold)
    rows = _in_window(await store.read_log(LOG_DECISIONS, LOOKBACK_ROWS), since, until)
    if len(rows) > C.REPLAY_MAX_DECISIONS:
        raise InvalidValue(
            f"the window holds {len(rows)} decisions, more than {C.REPLAY_MAX_DECISIONS}: "
            "narrow it",
            field="until",
        )
    if model is not None and await store.get_model(model) is None:
        raise NotFound(f"no model {model!r} in the registry", field="model")
    wanted = {v for r in rows for v in (r.model_version, r.serving_model) if v and v != EXPLORE}
    models = await _load_models(store, wanted | ({model} if model else set()))
    if model is not None and models[model] is None:
        raise InvalidValue(f"model {model!r} cannot be loaded by this build", field="model")
    policies = await _load_policies(store, settings, {r.config_versions.policy for r in rows})

    def predict(version: str, features: Sequence[float]) -> float | None:
        m = models.get(version)
        return None if m is None else m.predict_one(features)

    candidate = None
    events = None
    if model is not None or threshold is not None:
        candidate = Candidate(model=model, threshold=threshold)
        end = until + (LABEL_HORIZON_S + SESSION_GAP_S) * 1000
        raw = [_event.decode(b) for b in await store.read_log(LOG_EVENTS, LOOKBACK_ROWS)]
        events = EventLog(e for e in raw if since <= int(e["ts"]) < end)
    return await asyncio.to_thread(
        replay_window,
        rows,
        policies.get,
        predict,
        since=since,
        until=until,
        candidate=candidate,
        events=events,
        now_ms=now_ms,
    )
