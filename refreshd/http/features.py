"""HTTP shell of the feature registry: the declared features and the models using them."""

from __future__ import annotations

import msgspec
from aiohttp import web

from refreshd.http.codec import json_response
from refreshd.http.keys import STORE
from refreshd.http.routing import Route
from refreshd.live.lineage import FeatureRegistry, feature_registry
from refreshd.live.registry import ModelMeta


async def list_features(request: web.Request) -> web.Response:
    store = request.app[STORE]
    metas = [msgspec.json.decode(b, type=ModelMeta) for b in await store.list_models()]
    return json_response(feature_registry(metas))


ROUTES: tuple[Route, ...] = (
    # Admin like GET /v1/models: it lists the store's model inventory. An edge client does not
    # need it; it reads the feature names of the model it loads from /v1/models/current.
    Route(
        "GET",
        "/v1/features",
        list_features,
        "Every declared feature: version, source events, window, aggregate, the models using it",
        None,
        FeatureRegistry,
        errors=(503,),
        admin=True,
    ),
)
