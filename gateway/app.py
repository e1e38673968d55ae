"""Gateway composition root: the common application plus the routing table, admission and proxy.

The admin routes of stream inspection (`gateway.admin`, `/api/v1/admin/...`) are answered here from
Redis; every other path under `/api/v1` goes to one catch-all handler (`gateway.proxy.handle`), which hands
WebSocket upgrades on WebSocket routes to `gateway.websocket`; `/health`
aggregates the services' readiness (`gateway.health`: details for admins only) in place of the common
liveness answer;
`/ready` stays the common one (is the gateway's own Redis reachable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from common.core.settings import Settings
from common.http.app import create_app as create_base_app
from common.http.app import runtime_of
from common.http.contexts import redis_context
from common.messaging.readings import StreamGroups
from gateway.admin import add_admin_routes
from gateway.admission import Admission
from gateway.apidocs import add_docs_routes
from gateway.health import SHARED_PROBES, SharedProbes, health
from gateway.proxy import GATEWAY, Gateway, Proxy, handle
from gateway.routing import API_PREFIX, Router
from gateway.websocket import WebSocketProxy


async def gateway_context(app: web.Application) -> AsyncIterator[None]:
    """Attach Redis and the token verifier (opened by `redis_context`, which runs first), sample every
    consumer group for the metrics and open the upstream session; close the session at shutdown, before
    Redis goes."""
    gateway = app[GATEWAY]
    rt = runtime_of(app)
    gateway.admission.bind(rt)
    rt.metrics.watch("all_groups", StreamGroups(rt.redis_client()))  # the lag of every group, even a stopped one
    await gateway.proxy.open()
    await gateway.websockets.open()
    yield
    await gateway.websockets.close()
    await gateway.proxy.close()


async def close_websockets(app: web.Application) -> None:
    """At shutdown, before the server waits for its handlers: an open WebSocket would hold it up to
    the shutdown timeout. Closed with 1001, so clients reconnect elsewhere."""
    await app[GATEWAY].websockets.shutdown()


def create_app(settings: Settings) -> web.Application:
    app = create_base_app(settings, health_handler=health)
    app[GATEWAY] = Gateway(Router(settings.upstreams()), Admission(settings), Proxy(settings), WebSocketProxy(settings))
    app[SHARED_PROBES] = SharedProbes()
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(gateway_context)
    app.on_shutdown.append(close_websockets)
    add_admin_routes(app.router)  # before the catch-all, which would proxy them nowhere
    add_docs_routes(app, settings)  # /api/v1/openapi.json and /api/v1/asyncapi.json too: before the catch-all
    app.router.add_route("*", API_PREFIX + "/{tail:.*}", handle)
    return app
