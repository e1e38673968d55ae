"""Stand-in app factories for supervisor tests: real processes, real servers, no business logic.

`common.serve` runs these through `--factory`, exactly as it runs a real service, so the tests exercise
the supervisor (ports, environment, readiness, crashes, shutdown) independently of any one service.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import structlog
from aiohttp import web

from common.core.settings import Settings
from common.http.app import create_app as create_base_app
from common.http.app import json_response, public

log = structlog.get_logger("fake")

ROUTE_VARIABLES = ("AUTH_URL", "PROJECT_URL", "COMMENT_URL", "NOTIF_URL")


def create_app(settings: Settings) -> web.Application:
    """A service that connects to its database and answers what it was configured with."""
    app = create_base_app(settings)

    async def database(app: web.Application) -> AsyncIterator[None]:
        conn = await asyncpg.connect(settings.database_url)
        await conn.close()
        log.info("fake.started", database_url=settings.database_url)
        yield
        log.info("fake.stopping")

    @public
    async def info(request: web.Request) -> web.Response:
        return json_response(
            {
                "service_name": settings.service_name,
                "database_url": settings.database_url,
                "redis_url": settings.redis_url,
                "consumer_name": settings.consumer_name,
                "pid": os.getpid(),
                "private_key_file": settings.jwt_private_key_file,
                "routes": {name: os.environ.get(name) for name in ROUTE_VARIABLES},
            }
        )

    if settings.service_name != "fake_gateway":
        app.cleanup_ctx.append(database)
    app.router.add_get("/info", info)
    return app


def create_failing_app(settings: Settings) -> web.Application:
    """A service whose start-up fails the way a bad migration would."""
    app = create_base_app(settings)

    async def broken(app: web.Application) -> AsyncIterator[None]:
        log.error("fake.migration_failed", reason="relation already exists")
        raise RuntimeError("migration failed")
        yield

    app.cleanup_ctx.append(broken)
    return app
