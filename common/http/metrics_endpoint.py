"""`GET /metrics` of every process, served on a port of its own (`METRICS_PORT`), not on the API's.

The metrics name hosts, streams, consumer groups and the traffic of every route: they are for
Prometheus, not for whoever reaches the API. As Prometheus deployments usually do, each process
serves them on a second port that only the scraper reaches: docker-compose does not publish it, the
k8s Services do not route it (Prometheus scrapes pods, pointed at the port by their annotations), and
`swarm up` gives each process one of its own. The API port, the gateway's above all, has no `/metrics`.

`METRICS_PORT=0` serves them on the main port instead, as `GET /metrics` without a token: for apps
started inside a test, or a deployment whose main port is private anyway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from common.http.headers import secure_response
from common.service.metrics import CONTENT_TYPE
from common.service.runtime import Runtime

log = structlog.get_logger("metrics")

METRICS_PATH = "/metrics"


def metrics_handler(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=await runtime.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return metrics


def metrics_server(runtime: Runtime) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that serves `/metrics` on `METRICS_PORT` for as long as the app runs. Installed
    first, so the metrics answer while the other contexts start (migrations) and stop (draining)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = runtime.settings
        endpoint = web.Application()
        endpoint.on_response_prepare.append(secure_response)
        endpoint.router.add_get(METRICS_PATH, metrics_handler(runtime))
        runner = web.AppRunner(endpoint, access_log=None, shutdown_timeout=2.0)  # a scrape takes milliseconds
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.metrics_port).start()
            log.info("metrics.listening", url=f"http://{settings.host}:{settings.metrics_port}{METRICS_PATH}")
            yield
        finally:
            await runner.cleanup()

    return context
