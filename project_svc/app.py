"""project_svc composition root: the application, its resources and background loops (the reminders' too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from common.contracts.manifest import validate
from common.core.settings import Settings
from common.core.tasks import stop_with_grace
from common.docs.openapi import add_openapi_route
from common.http.app import create_app as create_base_app
from common.http.app import runtime_of
from common.http.contexts import consumer_context, database_context, outbox_context, redis_context, retention_context
from project_svc.api import PROJECT_SERVICE, add_routes
from project_svc.consumers import HANDLERS
from project_svc.manifest import MANIFEST
from project_svc.reminders import STOP_GRACE_S, Reminders
from project_svc.service import ProjectService

MIGRATIONS = Path(__file__).parent / "migrations"

REMINDERS = web.AppKey("reminders", Reminders)


async def reminders_context(app: web.Application) -> AsyncIterator[None]:
    """Run the reminder loop while the app runs (after the pool and the outbox relay exist)."""
    reminders = app[REMINDERS]
    task = asyncio.create_task(reminders.run(), name="reminders")

    async def check() -> None:
        if task.done():
            raise RuntimeError("reminder loop is not running")

    runtime_of(app).readiness["reminders"] = check
    yield
    reminders.stop()
    await stop_with_grace(task, STOP_GRACE_S)


def create_app(settings: Settings) -> web.Application:
    validate(MANIFEST)  # a wrong declaration stops the start-up, instead of silently dropping a check
    app = create_base_app(settings)
    app[PROJECT_SERVICE] = ProjectService(runtime_of(app))
    app[REMINDERS] = Reminders(runtime_of(app))
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(database_context(MIGRATIONS))
    app.cleanup_ctx.append(outbox_context)
    app.cleanup_ctx.append(retention_context(MANIFEST.publishes))  # trims the streams it writes to
    app.cleanup_ctx.append(consumer_context(MANIFEST.checked_handlers(HANDLERS)))
    app.cleanup_ctx.append(reminders_context)  # stops first at shutdown, before the relay and the pool
    add_routes(app)
    add_openapi_route(app, "project_svc")
    return app
