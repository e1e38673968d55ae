"""auth_svc composition root: the application, its resources and background loops."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from auth_svc.api import AUTH_SERVICE, add_routes
from auth_svc.manifest import MANIFEST
from auth_svc.service import AuthService, PasswordHasher
from auth_svc.tokens import TokenIssuer
from common.contracts.manifest import validate
from common.core.settings import Settings
from common.docs.openapi import add_openapi_route
from common.http.app import create_app as create_base_app
from common.http.app import runtime_of
from common.http.contexts import database_context, outbox_context, redis_context, retention_context

MIGRATIONS = Path(__file__).parent / "migrations"


def build_service(settings: Settings, app: web.Application) -> AuthService:
    issuer = TokenIssuer(
        settings.read_private_key(),
        settings.jwt_issuer,
        settings.access_token_ttl_s,
        settings.refresh_token_ttl_s,
    )
    return AuthService(runtime_of(app), issuer, PasswordHasher(settings.password_hash_scheme))


def create_app(settings: Settings) -> web.Application:
    validate(MANIFEST)  # a wrong declaration stops the start-up, instead of silently dropping a check
    app = create_base_app(settings)
    app[AUTH_SERVICE] = build_service(settings, app)
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(database_context(MIGRATIONS))
    app.cleanup_ctx.append(outbox_context)
    app.cleanup_ctx.append(retention_context(MANIFEST.publishes))  # trims the streams it writes to
    add_routes(app)
    add_openapi_route(app, "auth_svc")
    return app
