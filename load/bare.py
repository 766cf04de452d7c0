"""The ceiling reference: a bare aiohttp endpoint that decodes and answers decide-shaped JSON."""

from __future__ import annotations

import argparse

import msgspec
from aiohttp import web

_dec = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()


async def decide(request: web.Request) -> web.Response:
    body = _dec.decode(await request.read())
    out = {"decision_id": "x", "refresh": True, "reason": "fallback", "user": body.get("user_id")}
    return web.Response(body=_enc.encode(out), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description="bare aiohttp JSON endpoint (benchmark ceiling)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/decide", decide)
    app.router.add_get("/healthz", healthz)
    from refreshd.server import new_loop

    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=new_loop())


if __name__ == "__main__":
    main()
