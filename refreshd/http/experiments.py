"""HTTP shell of threshold experiments: config, assignment and report."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from aiohttp import web

from refreshd import constants as C
from refreshd.core.errors import Conflict, InvalidValue
from refreshd.core.experiments import ExperimentConfig, assign, experiment_to_json, parse_experiment
from refreshd.core.exposure import stats_key
from refreshd.core.expstats import Report, build_report, stats_from_fields
from refreshd.http.codec import json_response, path_id, read_any_json, stored_item
from refreshd.http.keys import EXPERIMENTS, STORE
from refreshd.http.routing import BODY_ERRORS, Route
from refreshd.live.expbook import KIND

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


def _exp_id(request: web.Request) -> str:
    return path_id(request, "experiment", max_len=64)


async def _stored(request: web.Request, exp_id: str) -> tuple[int, ExperimentConfig]:
    version, blob = await stored_item(request.app[STORE], KIND, exp_id, "experiment")
    return version, parse_experiment(exp_id, blob)


async def put_experiment(request: web.Request) -> web.Response:
    exp_id = _exp_id(request)
    cfg = parse_experiment(
        exp_id, await read_any_json(request)
    )  # ExperimentError is a 422 naming the field
    store = request.app[STORE]
    _, items = await store.get_config(KIND)
    if exp_id in items:
        old = parse_experiment(exp_id, items[exp_id])
        if old.status != "draft":
            for name in FROZEN_ONCE_STARTED:
                if getattr(old, name) != getattr(cfg, name):
                    raise Conflict(
                        f"{name} of an experiment that has started cannot change; create a new one",
                        field=name,
                    )
    doc = experiment_to_json(cfg)
    version = (await store.put_config(KIND, exp_id, msgspec.json.encode(doc))).version
    await request.app[EXPERIMENTS].refresh(store)
    return json_response(ExperimentOut(exp_id, doc, version))


async def get_experiment(request: web.Request) -> web.Response:
    exp_id = _exp_id(request)
    version, cfg = await _stored(request, exp_id)
    return json_response(ExperimentOut(exp_id, experiment_to_json(cfg), version))


async def list_experiments(request: web.Request) -> web.Response:
    version, items = await request.app[STORE].get_config(KIND)
    out = [
        ExperimentOut(i, experiment_to_json(parse_experiment(i, blob)), version)
        for i, blob in sorted(items.items())
    ]
    return json_response(ExperimentList(version, out))


async def assignment(request: web.Request) -> web.Response:
    exp_id = _exp_id(request)
    user_id = request.query.get("user_id", "")
    if not user_id or len(user_id) > C.ID_MAX_LEN or not _ID.match(user_id):
        raise InvalidValue(
            "user_id is required: 1–128 characters of A–Z a–z 0–9 . _ : @ -", field="user_id"
        )
    _, cfg = await _stored(request, exp_id)
    a = assign(exp_id, cfg, user_id)
    return json_response(AssignmentOut(a.in_experiment, a.variant, a.hash))


async def report(request: web.Request) -> web.Response:
    exp_id = _exp_id(request)
    _, cfg = await _stored(request, exp_id)
    keys = [stats_key(exp_id, v.key) for v in cfg.variants]
    rows = await request.app[STORE].read_stats(keys)
    stats = {v.key: stats_from_fields(row) for v, row in zip(cfg.variants, rows, strict=True)}
    return json_response(build_report(exp_id, cfg, stats))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/experiments",
        list_experiments,
        "List experiments",
        None,
        ExperimentList,
        errors=(503,),
    ),
    Route(
        "PUT",
        "/v1/experiments/{id}",
        put_experiment,
        "Create or update a threshold experiment (seed, weights, variants frozen once started)",
        ExperimentConfig,
        ExperimentOut,
        errors=(*BODY_ERRORS, 409, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/experiments/{id}",
        get_experiment,
        "Read an experiment",
        None,
        ExperimentOut,
        errors=(404, 422, 503),
    ),
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
        "Per-variant means, lifts with 95 % CIs, p-values, chance to win, SRM check",
        None,
        Report,
        errors=(404, 422, 503),
    ),
)
