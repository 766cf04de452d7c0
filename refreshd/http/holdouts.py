"""HTTP shell of holdouts: config and report (the report is an experiment report of the
holdout's two groups, `holdout` the baseline)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from refreshd.core.expstats import Report
from refreshd.core.holdouts import (
    HoldoutConfig,
    as_experiment,
    holdout_key,
    holdout_to_json,
    parse_holdout,
)
from refreshd.http.codec import json_response
from refreshd.http.experiments import experiment_report, refuse_changes
from refreshd.http.keys import GUARDRAILS, HOLDOUTS, STORE
from refreshd.http.resources import ConfigResource, ExpectedVersion
from refreshd.http.routing import Route
from refreshd.live.holdoutbook import KIND

# Changing these of a holdout that has run moves users in or out of it: start a new one.
FROZEN_ONCE_STARTED = ("share", "seed")


class HoldoutOut(msgspec.Struct):
    id: str
    holdout: dict[str, Any]
    version: int


class HoldoutList(msgspec.Struct):
    version: int
    holdouts: list[HoldoutOut]


class HoldoutPut(HoldoutConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Documentation shape of a PUT body (validation is `parse_holdout`)."""

    version: ExpectedVersion = None


def _keep_users(old: HoldoutConfig, new: HoldoutConfig) -> None:
    if old.status == "draft":
        return
    refuse_changes("a holdout", old, new, FROZEN_ONCE_STARTED)


def _served(holdout_id: str, blob: bytes) -> dict[str, Any]:
    return holdout_to_json(parse_holdout(holdout_id, blob))


RESOURCE: ConfigResource[HoldoutConfig] = ConfigResource(
    kind=KIND,
    what="holdout",
    path="/v1/holdouts",
    parse=parse_holdout,  # ExperimentError is a 422 naming the field
    to_json=holdout_to_json,
    item_body=HoldoutOut,
    book=HOLDOUTS,
    list_summary="List holdouts",
    list_doc=HoldoutList,
    put_summary="Create or update a holdout (a share of users on the fixed rule, in no experiment)",
    get_summary="Read a holdout",
    delete_summary="Delete a holdout",
    request_doc=HoldoutPut,
    item_doc=HoldoutOut,
    load=_served,
    check=_keep_users,
    max_id_len=64,
)


async def report(request: web.Request) -> web.Response:
    holdout_id = RESOURCE.item_id(request)
    _, blob = await RESOURCE.read(request.app[STORE], holdout_id)
    cfg = as_experiment(holdout_id, parse_holdout(holdout_id, blob))
    app = request.app
    key = holdout_key(holdout_id)
    return json_response(await experiment_report(app[STORE], key, cfg, app[GUARDRAILS]))


ROUTES: tuple[Route, ...] = (
    *RESOURCE.routes(),
    Route(
        "GET",
        "/v1/holdouts/{id}/report",
        report,
        "The held-out users against everyone else, with the experiments' statistics",
        None,
        Report,
        errors=(404, 422, 503),
        admin=True,
    ),
)
