"""The generated OpenAPI document is valid 3.1 and covers every route and error."""

from __future__ import annotations

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from refreshd.console.app import serves
from refreshd.http.routes import ROUTES
from tests.support import MakeClient, now_ms


async def test_openapi_is_valid_and_complete(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    spec = await resp.json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for route in ROUTES:
        op = spec["paths"][route.path][route.method.lower()]
        assert str(route.status) in op["responses"]
        for code in route.errors:
            schema = op["responses"][str(code)]["content"]["application/json"]["schema"]
            body = (
                route.response.__name__
                if code in route.own_body_on and route.response
                else "ErrorBody"
            )
            assert schema == {"$ref": f"#/components/schemas/{body}"}
    # Every route the app serves is documented, but the console's HTML pages (not JSON).
    served = {(r.method, r.resource.canonical) for r in client.app.router.routes()
              if r.method != "HEAD" and r.resource is not None
              and not serves(r.resource.canonical)}  # fmt: skip
    assert not any(serves(p) for p in spec["paths"])
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == documented


async def test_decide_schema_matches_what_the_service_sends(make_client: MakeClient) -> None:
    client = await make_client()
    spec = await (await client.get("/openapi.json")).json()
    schema = {"$ref": "#/components/schemas/DecideResponse", "components": spec["components"]}
    body = {"user_id": "u1", "ts": now_ms(), "trigger": "open"}
    resp = await (await client.post("/v1/decide", json=body)).json()
    Draft202012Validator(schema).validate(resp)
