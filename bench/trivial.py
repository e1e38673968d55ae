"""The reference handler of benchmark 5: the cheapest authenticated poll the service skeleton can serve.

Built like every service (`common.http.app.create_app`: the same middlewares, the same token check against
the same Redis deny-list), with one route in place of notif_svc's feed: `GET /notifications` answers
304 when `If-None-Match` carries the caller's constant ETag, else a tiny 200. Put behind a gateway in
notif_svc's place, it shows what the gateway + skeleton cost a poll, so the feed's own 304 path is
judged against that and nothing else. Run as `python -m common.serve notif_svc --factory bench.trivial:create`.
"""

from __future__ import annotations

from aiohttp import web

from common.core.settings import Settings
from common.http.app import PRINCIPAL, create_app
from common.http.contexts import redis_context


async def poll(request: web.Request) -> web.StreamResponse:
    etag = f'"{request[PRINCIPAL].user_id}"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.json_response({"items": []}, headers={"ETag": etag})


def create(settings: Settings) -> web.Application:
    app = create_app(settings)
    app.cleanup_ctx.append(redis_context)
    app.router.add_get("/notifications", poll)
    return app
