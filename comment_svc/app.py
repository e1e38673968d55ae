"""comment_svc composition root: the application, its resources, its outbox relay and its consumers."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from comment_svc.api import COMMENT_SERVICE, add_routes
from comment_svc.consumers import HANDLERS
from comment_svc.manifest import MANIFEST
from comment_svc.service import CommentService
from common.contracts.manifest import validate
from common.core.settings import Settings
from common.docs.openapi import add_openapi_route
from common.http.app import create_app as create_base_app
from common.http.app import runtime_of
from common.http.contexts import consumer_context, database_context, outbox_context, redis_context, retention_context

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings) -> web.Application:
    validate(MANIFEST)  # a wrong declaration stops the start-up, instead of silently dropping a check
    app = create_base_app(settings)
    app[COMMENT_SERVICE] = CommentService(runtime_of(app))
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(database_context(MIGRATIONS))
    app.cleanup_ctx.append(outbox_context)
    app.cleanup_ctx.append(retention_context(MANIFEST.publishes))  # trims the streams it writes to
    app.cleanup_ctx.append(consumer_context(MANIFEST.checked_handlers(HANDLERS)))
    add_routes(app)
    add_openapi_route(app, "comment_svc")
    return app
