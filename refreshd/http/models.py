"""HTTP shell of the intent model registry: list, current, artifact, train."""

from __future__ import annotations

import msgspec
from aiohttp import web

from refreshd.core.errors import InvalidValue, NotFound
from refreshd.http.codec import json_response
from refreshd.http.keys import CLOCK, REGISTRY, STORE, TRAINER
from refreshd.http.routing import Route
from refreshd.live.registry import ModelMeta
from refreshd.live.training import TrainReport


class ModelList(msgspec.Struct):
    current: str | None
    models: list[ModelMeta]


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


async def train_model(request: web.Request) -> web.Response:
    force = request.query.get("force", "false").lower()
    if force not in ("true", "false", "1", "0"):
        raise InvalidValue("force must be true or false", field="force")
    # In the training process, as the scheduled retrain: in a thread it stalled decisions for
    # seconds (docs/performance.md).
    report = await request.app[TRAINER].train(
        request.app[STORE],
        request.app[REGISTRY],
        now_ms=request.app[CLOCK](),
        force=force in ("true", "1"),
        source="api",
    )
    return json_response(report)


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
)
