"""HTTP shell of threshold experiments: config, assignment and report (JSON, and its forest
plots as an SVG document drawn by the console's chart code, so both show one drawing)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec
from aiohttp import web

from refreshd import constants as C
from refreshd.console import svg
from refreshd.core.errors import Conflict, InvalidValue
from refreshd.core.experiments import ExperimentConfig, assign, experiment_to_json, parse_experiment
from refreshd.core.exposure import stats_key, sticky_record
from refreshd.core.expstats import Report, VariantStats, build_report, stats_from_fields
from refreshd.http.codec import json_response
from refreshd.http.keys import CLOCK, EXPERIMENTS, GUARDRAILS, STORE
from refreshd.http.resources import ConfigResource, ExpectedVersion
from refreshd.http.routing import Route
from refreshd.live.expbook import KIND
from refreshd.live.guardrails import GuardrailMeter
from refreshd.store.protocol import Store

_ID = re.compile(C.ID_PATTERN)
# Changing these of an experiment that has run moves users between variants and corrupts
# its statistics: start a new experiment instead (GrowthBook bumps a bucket version).
FROZEN_ONCE_STARTED = ("seed", "hash_version", "weights", "namespace", "variants")


class ExperimentOut(msgspec.Struct):
    id: str
    experiment: dict[str, Any]
    version: int


class ExperimentList(msgspec.Struct):
    version: int
    experiments: list[ExperimentOut]


class AssignmentOut(msgspec.Struct):
    in_experiment: bool
    variant: str | None
    hash: float | None
    # GrowthBook's `stickyBucketUsed`: the variant is the user's sticky record, not the hash's.
    sticky_bucket_used: bool = False


class ExperimentPut(ExperimentConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Documentation shape of a PUT body (validation is `parse_experiment`)."""

    version: ExpectedVersion = None


# What a sticky experiment may change while it runs: exposed users keep their recorded variant
# (and with a new bucket_version go where hashing with the new weights puts them).
STICKY_MAY_CHANGE = ("weights", "namespace")


def _keep_buckets(old: ExperimentConfig, new: ExperimentConfig) -> None:
    if old.status == "draft":
        return
    sticky = old.sticky and new.sticky
    names = [n for n in FROZEN_ONCE_STARTED if not (sticky and n in STICKY_MAY_CHANGE)]
    refuse_changes("an experiment", old, new, names)


def refuse_changes(what: str, old: object, new: object, names: Sequence[str]) -> None:
    """Raise a 409 naming the first of `names` that differs between a started item and its
    new version: changing it would move users between groups and corrupt the statistics."""
    for name in names:
        if getattr(old, name) != getattr(new, name):
            raise Conflict(
                f"{name} of {what} that has started cannot change; create a new one", field=name
            )


def _served(exp_id: str, blob: bytes) -> dict[str, Any]:
    return experiment_to_json(parse_experiment(exp_id, blob))


# The frozen-fields check reads the stored experiment and writes only if it is still the one
# read (a concurrent write cannot slip in between).
RESOURCE: ConfigResource[ExperimentConfig] = ConfigResource(
    kind=KIND,
    what="experiment",
    path="/v1/experiments",
    parse=parse_experiment,  # ExperimentError is a 422 naming the field
    to_json=experiment_to_json,
    item_body=ExperimentOut,
    book=EXPERIMENTS,
    list_summary="List experiments",
    list_doc=ExperimentList,
    put_summary=(
        "Create or update a threshold experiment (seed, weights, variants frozen once started)"
    ),
    get_summary="Read an experiment",
    request_doc=ExperimentPut,
    item_doc=ExperimentOut,
    load=_served,
    check=_keep_buckets,
    max_id_len=64,
)


async def _stored(request: web.Request, exp_id: str) -> ExperimentConfig:
    _, blob = await RESOURCE.read(request.app[STORE], exp_id)
    return parse_experiment(exp_id, blob)


def checked_user_id(user_id: str) -> str:
    """Return `user_id` if it is a valid user id, else a 422 naming `user_id`."""
    if not user_id or len(user_id) > C.ID_MAX_LEN or not _ID.match(user_id):
        raise InvalidValue(
            "user_id is required: 1–128 characters of A–Z a–z 0–9 . _ : @ -", field="user_id"
        )
    return user_id


async def assignment(request: web.Request) -> web.Response:
    exp_id = RESOURCE.item_id(request)
    user_id = checked_user_id(request.query.get("user_id", ""))
    cfg = await _stored(request, exp_id)
    record = None
    if cfg.sticky and cfg.status == "running":
        state, _ = await request.app[STORE].load_user(user_id, request.app[CLOCK]())
        record = sticky_record(state.exp, exp_id)
    a = assign(exp_id, cfg, user_id, record)
    return json_response(AssignmentOut(a.in_experiment, a.variant, a.hash, a.sticky))


async def variant_stats(
    store: Store, experiments: Sequence[tuple[str, ExperimentConfig]]
) -> list[dict[str, VariantStats]]:
    """Read the arms' statistics of several experiments in one store call (variant → stats)."""
    keys = [stats_key(eid, v.key) for eid, cfg in experiments for v in cfg.variants]
    rows = iter(await store.read_stats(keys))
    return [{v.key: stats_from_fields(next(rows)) for v in cfg.variants} for _, cfg in experiments]


async def experiment_report(
    store: Store, exp_id: str, cfg: ExperimentConfig, meter: GuardrailMeter | None = None
) -> Report:
    """The report of one experiment: what the report route serves and the console draws.

    With this worker's guardrail `meter`, its sums are added first, so that the report counts
    every request this worker has answered.
    """
    if meter is not None:
        await meter.flush(store)
    (stats,) = await variant_stats(store, [(exp_id, cfg)])
    return build_report(exp_id, cfg, stats)


async def _report(request: web.Request) -> Report:
    exp_id = RESOURCE.item_id(request)
    cfg = await _stored(request, exp_id)
    app = request.app
    return await experiment_report(app[STORE], exp_id, cfg, app[GUARDRAILS])


async def report(request: web.Request) -> web.Response:
    return json_response(await _report(request))


async def report_svg(request: web.Request) -> web.Response:
    """The report's forest plots (each arm's lift with its interval, per metric) as SVG."""
    r = await _report(request)
    title = f"Experiment {r.experiment}: relative lift over {r.variants[0].key}"
    doc = svg.forest_document(title, svg.report_forests(r))
    return web.Response(text=doc, content_type="image/svg+xml")


ROUTES: tuple[Route, ...] = (
    *RESOURCE.routes(),
    Route(
        "GET",
        "/v1/experiments/{id}/assignment",
        assignment,
        "Where a user falls (GrowthBook-identical hashing)",
        None,
        AssignmentOut,
        errors=(404, 422, 503),
        query=(("user_id", "user id", True),),
    ),
    Route(
        "GET",
        "/v1/experiments/{id}/report",
        report,
        "Per-variant means, lifts with CIs, p-values (sequential, corrected), chance to win and "
        "risk, CUPED, power, SRM check",
        None,
        Report,
        errors=(404, 422, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/experiments/{id}/report.svg",
        report_svg,
        "The report's forest plots: per metric each arm's relative lift with its interval",
        None,
        None,
        errors=(404, 422, 503),
        admin=True,
        content_type="image/svg+xml",
    ),
)
