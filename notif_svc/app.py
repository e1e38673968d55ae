"""notif_svc composition root: the application, its stores, its live hub and its consumers.

Start-up order (cleanup contexts; shutdown runs them backwards): Redis and the token verifier, the
PostgreSQL database (migrations, pool; always there: inbox and users replica), the notification store
(MongoDB or PostgreSQL), the live hub (pub/sub reader), then the consumer worker, which needs all of
them. notif_svc publishes no events, so it runs no outbox relay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from aiohttp import web

from common.contracts.manifest import validate
from common.core.settings import Settings
from common.docs.openapi import add_openapi_route
from common.http.app import create_app as create_base_app
from common.http.app import runtime_of
from common.http.contexts import CleanupContext, consumer_context, database_context, redis_context
from notif_svc.api import NOTIFICATION_SERVICE, add_routes
from notif_svc.consumers import build_handlers
from notif_svc.feed_states import FeedStateCache
from notif_svc.live import LiveHub, Signal
from notif_svc.manifest import MANIFEST
from notif_svc.service import RECHECK_INTERVAL_S, NotificationService
from notif_svc.store import NotificationStore, StoreFactory
from notif_svc.websocket import LIVE_HUB

MIGRATIONS = Path(__file__).parent / "migrations"


async def open_store(settings: Settings, pool: asyncpg.Pool) -> NotificationStore:
    """MongoDB when a URL is configured, else PostgreSQL (the embedded default of `swarm up`)."""
    if settings.mongo_url:
        # Imported here: a PostgreSQL-only deployment never loads the MongoDB driver.
        from notif_svc.store_mongo import MongoNotificationStore

        return MongoNotificationStore.connect(settings.mongo_url, settings.mongo_database)
    from notif_svc.store_postgres import PostgresNotificationStore

    return PostgresNotificationStore(pool)


def store_context(service: NotificationService, factory: StoreFactory) -> CleanupContext:
    async def context(app: web.Application) -> AsyncIterator[None]:
        rt = runtime_of(app)
        store = await factory(rt.settings, rt.db())
        await store.prepare()
        service.attach_store(store)
        rt.readiness["notification_store"] = store.ping
        yield
        service.attach_store(None)
        await store.close()

    return context


def live_context(hub: LiveHub) -> CleanupContext:
    async def context(app: web.Application) -> AsyncIterator[None]:
        await hub.start()

        async def check() -> None:
            if not hub.running() or not hub.connected.is_set():
                raise RuntimeError("not subscribed to notification wake-ups")

        runtime_of(app).readiness["live"] = check
        yield
        await hub.stop()

    return context


async def _release_waiters(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for open requests: held polls answer 304 and sockets close
    # with 1001 now, so clients move to another replica instead of shutdown waiting on them.
    app[LIVE_HUB].broadcast(Signal.CLOSING)


def create_app(settings: Settings, *, store_factory: StoreFactory = open_store) -> web.Application:
    """`store_factory` chooses the notification store; tests pass one (e.g. an in-memory MongoDB)."""
    validate(MANIFEST)  # a wrong declaration stops the start-up, instead of silently dropping a check
    app = create_base_app(settings)
    hub = LiveHub(settings, FeedStateCache(max_age_s=RECHECK_INTERVAL_S))
    service = NotificationService(runtime_of(app), hub)
    app[LIVE_HUB] = hub
    app[NOTIFICATION_SERVICE] = service
    app.cleanup_ctx.append(redis_context)
    app.cleanup_ctx.append(database_context(MIGRATIONS))
    app.cleanup_ctx.append(store_context(service, store_factory))
    app.cleanup_ctx.append(live_context(hub))
    app.cleanup_ctx.append(consumer_context(MANIFEST.checked_handlers(build_handlers(service))))
    app.on_shutdown.append(_release_waiters)
    add_routes(app)
    add_openapi_route(app, "notif_svc")
    return app
