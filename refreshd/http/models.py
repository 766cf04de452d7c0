"""HTTP shell of the intent model registry: list, current, artifact, train, and the
champion's lifecycle: promote, roll back, history."""

from __future__ import annotations

import msgspec
from aiohttp import web

from refreshd.core.champion import ModelChange
from refreshd.core.errors import NotFound
from refreshd.http.codec import json_response, operator, path_id, query_flag, query_int
from refreshd.http.keys import CLOCK, REGISTRY, STORE, TRAINER
from refreshd.http.routing import Route
from refreshd.live import champion
from refreshd.live.registry import ModelMeta
from refreshd.live.training import TrainReport
from refreshd.store.protocol import MODEL_HISTORY_MAX

# GET /v1/models/history without `limit`: the last hundred changes.
HISTORY_DEFAULT = 100


class ModelList(msgspec.Struct):
    current: str | None
    models: list[ModelMeta]


class ModelHistory(msgspec.Struct):
    current: str | None
    history: list[ModelChange]  # newest first


async def list_models(request: web.Request) -> web.Response:
    store = request.app[STORE]
    metas = [msgspec.json.decode(b, type=ModelMeta) for b in await store.list_models()]
    return json_response(ModelList(await store.current_model_version(), metas))


async def current_model(request: web.Request) -> web.Response:
    meta = request.app[REGISTRY].meta
    if meta is None:
        raise NotFound("no intent model is loaded yet", field=None)
    return json_response(meta)


async def current_artifact(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    if registry.text is None or registry.meta is None:
        raise NotFound("no intent model is loaded yet", field=None)
    return web.Response(
        text=registry.text,
        content_type="text/plain",
        headers={"X-Model-Version": registry.meta.version, "ETag": f'"{registry.meta.version}"'},
    )


def model_version(request: web.Request) -> str:
    """Return the `{version}` of the path, or a 422 when it cannot name a model."""
    return path_id(request, "model", name="version")


async def train_model(request: web.Request) -> web.Response:
    # In the training process, as the scheduled retrain: in a thread it stalled decisions for
    # seconds (docs/performance.md).
    report = await request.app[TRAINER].train(
        request.app[STORE],
        request.app[REGISTRY],
        now_ms=request.app[CLOCK](),
        force=query_flag(request, "force"),
        source="api",
        who=operator(request),
    )
    return json_response(report)


async def promote_model(request: web.Request) -> web.Response:
    version, force, who = model_version(request), query_flag(request, "force"), operator(request)
    report = await champion.promote(
        request.app[STORE],
        request.app[REGISTRY],
        version,
        force=force,
        who=who,
        now_ms=request.app[CLOCK](),
    )
    return json_response(report)


async def rollback_model(request: web.Request) -> web.Response:
    who = operator(request)
    change = await champion.rollback(
        request.app[STORE], request.app[REGISTRY], who=who, now_ms=request.app[CLOCK]()
    )
    return json_response(change)


async def model_history(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", default=HISTORY_DEFAULT, lo=1, hi=MODEL_HISTORY_MAX)
    store = request.app[STORE]
    changes = await champion.history(store, limit)
    return json_response(ModelHistory(await store.current_model_version(), changes))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/v1/models",
        list_models,
        "Every stored intent model, and the current one",
        None,
        ModelList,
        errors=(503,),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/models/current",
        current_model,
        "The model this worker scores with",
        None,
        ModelMeta,
        errors=(404,),
    ),
    Route(
        "GET",
        "/v1/models/current/artifact",
        current_artifact,
        "The current model as LightGBM text (what an edge client loads)",
        None,
        None,
        errors=(404,),
        content_type="text/plain",
    ),
    Route(
        "POST",
        "/v1/models/train",
        train_model,
        "Retrain from the logs now; publish only if not worse on the same holdout (or force)",
        None,
        TrainReport,
        errors=(409, 422, 503),
        admin=True,
        query=(("force", "true|false", False),),
    ),
    Route(
        "POST",
        "/v1/models/{version}/promote",
        promote_model,
        "Make a stored model the champion if no worse on the same holdout (or force); "
        "every worker within one config poll",
        None,
        champion.PromoteReport,
        errors=(404, 409, 422, 503),
        admin=True,
        query=(("force", "true|false: skip the not-worse check", False),),
    ),
    Route(
        "POST",
        "/v1/models/rollback",
        rollback_model,
        "Return to the previous champion; every worker within one config poll",
        None,
        ModelChange,
        errors=(409, 422, 503),
        admin=True,
    ),
    Route(
        "GET",
        "/v1/models/history",
        model_history,
        "Every change of the champion: who, when, from, to (newest first)",
        None,
        ModelHistory,
        errors=(422, 503),
        admin=True,
        query=(("limit", f"1..{MODEL_HISTORY_MAX} (default {HISTORY_DEFAULT})", False),),
    ),
)
