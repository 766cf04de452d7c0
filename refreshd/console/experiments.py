"""Experiments: the list with users per arm, and one experiment's report as GrowthBook shows
it (per metric the arms' means, lift with its CI as a forest plot, p-value, chance to win, the
SRM check), an assignment lookup, and the admin controls: create, start, stop, edit weights.

Everything goes through `refreshd.http.experiments`: its resource writes (with the frozen-fields
check: a started experiment's weights cannot change), its report builder, its assignment."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from refreshd.console import svg
from refreshd.console.common import Problem, form, page, problem, redirect, shown_version
from refreshd.core.errors import InvalidValue, RefreshdError
from refreshd.core.experiments import assign, parse_experiment
from refreshd.http.codec import decode_any
from refreshd.http.experiments import RESOURCE, checked_user_id, experiment_report, variant_stats
from refreshd.http.keys import STORE
from refreshd.http.resources import Expected

BASE = "/console/experiments"
TEMPLATE = {
    "variants": [{"key": "control"}, {"key": "low", "params": {"threshold": 0.3}}],
    "weights": [0.5, 0.5],
    "status": "draft",
}


async def experiments(
    request: web.Request, error: Problem | None = None, draft: str = ""
) -> web.Response:
    store = request.config_dict[STORE]
    version, items = await RESOURCE.items(store)
    cfgs = [(i.id, parse_experiment(i.id, i.doc)) for i in items]
    stats = await variant_stats(store, cfgs)
    rows = [
        {
            "id": eid,
            "status": cfg.status,
            "version": item.version,
            "arms": [(v.key, s[v.key].users) for v in cfg.variants],
        }
        for (eid, cfg), item, s in zip(cfgs, items, stats, strict=True)
    ]
    return page(
        request,
        "experiments.html",
        {
            "rows": rows,
            "version": version,
            "error": error,
            "draft": draft or msgspec.json.format(msgspec.json.encode(TEMPLATE)).decode(),
        },
        status=error.status if error else 200,
    )


async def create(request: web.Request) -> web.Response:
    data = await form(request)
    try:
        exp_id = RESOURCE.valid_id(data.get("id", ""))
        body = decode_any(data.get("experiment", ""))
        await RESOURCE.write(request.config_dict, exp_id, body, Expected(0, "id"))
    except RefreshdError as err:
        return await experiments(request, problem(err), data.get("experiment", ""))
    raise redirect(f"{BASE}/{exp_id}")


async def experiment(
    request: web.Request, error: Problem | None = None, status: int = 200
) -> web.Response:
    exp_id = RESOURCE.valid_id(request.match_info["id"])
    item = await RESOURCE.get(request.config_dict, exp_id)
    cfg = parse_experiment(exp_id, item.doc)
    report = await experiment_report(request.config_dict[STORE], exp_id, cfg)
    lookup: dict[str, Any] | None = None
    user_id = request.query.get("user_id")
    if user_id is not None:
        try:
            a = assign(exp_id, cfg, checked_user_id(user_id))
            lookup = {"user_id": user_id, "assignment": a}
        except InvalidValue as err:
            error, status = problem(err), 422
    plots = {m: svg.forest(title, rows) for m, title, rows in svg.report_forests(report)}
    return page(
        request,
        "experiment.html",
        {
            "id": exp_id,
            "item": item,
            "cfg": cfg,
            "report": report,
            "plots": plots,
            "lookup": lookup,
            "error": error,
            "weights": ", ".join(f"{w:g}" for w in (cfg.weights or [])),
        },
        status=error.status if error and status == 200 else status,
    )


async def change(request: web.Request) -> web.Response:
    """Start, stop or reweigh: the stored document with one field changed, written at the
    version shown (a concurrent change is a 409 shown inline, not overwritten)."""
    exp_id = RESOURCE.valid_id(request.match_info["id"])
    data = await form(request)
    item = await RESOURCE.get(request.config_dict, exp_id)
    doc = dict(item.doc)
    action = data.get("action")
    try:
        if action in ("start", "stop"):
            doc["status"] = "running" if action == "start" else "stopped"
        elif action == "weights":
            try:
                doc["weights"] = [float(w) for w in data.get("weights", "").split(",")]
            except ValueError:
                raise InvalidValue(
                    "weights: numbers separated by commas, e.g. 0.5, 0.5", field="weights"
                ) from None
        else:
            raise InvalidValue("action must be start, stop or weights", field="action")
        await RESOURCE.write(request.config_dict, exp_id, doc, shown_version(data))
    except RefreshdError as err:
        return await experiment(request, problem(err))
    raise redirect(f"{BASE}/{exp_id}")
