"""Mounting the console on the service: its routes, templates, static files and guard.

The console's routes go on the service's router but not in its JSON route table
(`refreshd.http.routes.ROUTES`): they are HTML, have no OpenAPI entry and are not fuzzed as
JSON. `serves(path)` says which paths are the console's (tests that compare the served routes
with the documented ones leave these out).
"""

from __future__ import annotations

import hmac
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from refreshd.console import auth, decisions, editors, experiments, fences, models, overview
from refreshd.console.common import form, page, problem
from refreshd.core.errors import RefreshdError
from refreshd.http.keys import SETTINGS

__all__ = ["PREFIX", "add_console", "serves"]

PREFIX = auth.PREFIX
HERE = Path(__file__).parent


def serves(path: str) -> bool:
    """Whether `path` (a route's template or a request's path) is the console's, not the API's."""
    return path in ("/", PREFIX) or path.startswith(PREFIX + "/")


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX)


async def login_form(
    request: web.Request, error: str | None = None, nxt: str | None = None
) -> web.Response:
    token = request.config_dict[SETTINGS].admin_token
    if token is None:
        raise web.HTTPSeeOther(PREFIX)
    nxt = nxt or request.query.get("next", PREFIX)
    return page(
        request,
        "login.html",
        {"next": nxt if serves(nxt.split("?")[0]) else PREFIX, "login_error": error},
        status=401 if error else 200,
    )


async def login(request: web.Request) -> web.Response:
    token = request.config_dict[SETTINGS].admin_token
    data = await form(request)
    if token is None:
        raise web.HTTPSeeOther(PREFIX)
    nxt = data.get("next", PREFIX)
    if not hmac.compare_digest(data.get("token", "").encode(), token.encode()):
        return await login_form(request, "That is not the admin token.", nxt)
    response = web.HTTPSeeOther(nxt if serves(nxt.split("?")[0]) else PREFIX)
    auth.set_session(response, request, token)
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(auth.SESSION_COOKIE, path=PREFIX)
    raise response


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", PREFIX, overview.overview),
    ("GET", f"{PREFIX}/fragment/overview", overview.overview_fragment),
    ("GET", f"{PREFIX}/login", login_form),
    ("POST", f"{PREFIX}/login", login),
    ("POST", f"{PREFIX}/logout", logout),
    ("GET", f"{PREFIX}/experiments", experiments.experiments),
    ("POST", f"{PREFIX}/experiments", experiments.create),
    ("GET", f"{PREFIX}/experiments/{{id}}", experiments.experiment),
    ("POST", f"{PREFIX}/experiments/{{id}}", experiments.change),
    ("GET", f"{PREFIX}/fences", fences.fences),
    ("POST", f"{PREFIX}/fences", fences.add),
    ("POST", f"{PREFIX}/fences/{{id}}/delete", fences.delete),
    ("GET", f"{PREFIX}/rules", editors.rules),
    ("POST", f"{PREFIX}/rules", editors.save_rule),
    ("POST", f"{PREFIX}/rules/{{id}}/delete", editors.delete_rule),
    ("GET", f"{PREFIX}/policy", editors.policy),
    ("POST", f"{PREFIX}/policy", editors.save_policy),
    ("GET", f"{PREFIX}/models", models.models),
    ("POST", f"{PREFIX}/models/rollback", models.rollback),
    ("POST", f"{PREFIX}/models/{{version}}/promote", models.promote),
    ("POST", f"{PREFIX}/models/{{version}}/shadow", models.shadow_change),
    ("GET", f"{PREFIX}/decisions", decisions.decisions),
)


@web.middleware
async def console(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The console's guard and its error pages; every other path passes straight through."""
    if not serves(request.path) or request.path == "/":
        return await handler(request)

    async def shown(req: web.Request) -> web.StreamResponse:
        try:
            return await handler(req)
        except RefreshdError as err:  # e.g. an unknown experiment id: an HTML 404 page
            p = problem(err)
            return page(req, "error.html", {"error": p}, status=p.status)

    return await auth.guard(request, shown)


def add_console(app: web.Application) -> None:
    """Serve the console from `app`: templates and static files from this package."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.middlewares.append(console)
    app.router.add_get("/", root)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    app.router.add_static(f"{PREFIX}/static", HERE / "static")
    app.cleanup_ctx.append(overview.sampler)
