"""The cleanup contexts that run a service's `Runtime` inside its aiohttp application.

Each `*_context` below is an aiohttp `cleanup_ctx`: it opens a resource or starts a loop at start-up
and closes or stops it at shutdown, in reverse order. A service's `app.py` picks the ones it needs.
Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path

import redis.asyncio as aioredis
import structlog
from aiohttp import web

from common.core.envelope import stream_for
from common.core.settings import Settings, SettingsError
from common.core.tasks import stop_with_grace
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.http.app import runtime_of
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.handlers import Handler
from common.messaging.outbox import OutboxRelay
from common.messaging.retention import RetentionLoop
from common.messaging.tables import COMMON_MIGRATIONS
from common.redis.client import make_redis
from common.service.runtime import ReadinessCheck
from common.service.tokens import TokenVerifier

log = structlog.get_logger("runtime")

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


async def redis_context(app: web.Application) -> AsyncIterator[None]:
    """Redis client + the token verifier (it needs Redis for the session deny-list)."""
    rt = runtime_of(app)
    rt.redis = make_redis(rt.settings)
    rt.verifier = TokenVerifier(rt.settings.read_public_key(), rt.settings.jwt_issuer, rt.redis)
    rt.readiness["redis"] = _ping_redis(rt.redis)
    yield
    await rt.redis.aclose()


def _ping_redis(client: aioredis.Redis) -> ReadinessCheck:
    async def check() -> None:
        await client.ping()

    return check


def database_context(migrations: Path | None) -> CleanupContext:
    """Migrate (common tables, then the service's), then open the pool."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        rt = runtime_of(app)
        settings = rt.settings
        sources = [("common", COMMON_MIGRATIONS)]
        if migrations is not None:
            sources.append((settings.service_name, migrations))
        await migrate(settings.database_url, sources)
        rt.pool = await create_pool(settings.database_url, settings.db_pool_min, settings.db_pool_max)
        pool = rt.pool

        async def check() -> None:
            async with pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")

        rt.readiness["database"] = check
        yield
        try:
            await asyncio.wait_for(pool.close(), 10)
        except TimeoutError:
            log.warning("db.pool_close_timeout")
            pool.terminate()

    return context


async def outbox_context(app: web.Application) -> AsyncIterator[None]:
    rt = runtime_of(app)
    settings = rt.settings
    rt.relay = OutboxRelay(
        rt.db(),
        rt.redis_client(),
        settings.database_url,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_ms / 1000,
        metrics=rt.metrics,
        min_replicas_ack=settings.replicas_to_ack(),
        wait_timeout_ms=settings.redis_wait_timeout_ms,
    )
    rt.metrics.watch("outbox", rt.relay)
    task = asyncio.create_task(rt.relay.run(), name="outbox-relay")
    yield
    rt.relay.stop()
    await stop_with_grace(task, 5)
    # One last pass so events of requests that finished during shutdown leave now, not at next start.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(rt.relay.relay_once(), 2)
    await rt.relay.close()


def consumer_context(handlers: Mapping[str, Handler]) -> CleanupContext:
    """Run the consumer-group worker for this service's event handlers, as CONSUMER_CONCURRENCY loops.

    Each loop is a consumer of the service's group with a name of its own (the first keeps
    CONSUMER_NAME), so Redis shares the entries among them as among replicas, and the loops overlap
    their round trips: one applies its batch while another waits on PostgreSQL or Redis. Events may
    then be applied in a different order than published, exactly as with several replicas, which every
    handler already tolerates (versions, tombstones, locks: SPEC §5).
    """

    async def context(app: web.Application) -> AsyncIterator[None]:
        rt = runtime_of(app)
        settings = rt.settings
        if settings.redis_pool_max <= settings.consumer_concurrency:
            # Each loop holds a pooled connection through its blocking read: requests need some left.
            raise SettingsError(
                f"REDIS_POOL_MAX ({settings.redis_pool_max}) must exceed CONSUMER_CONCURRENCY "
                f"({settings.consumer_concurrency}): each consumer loop holds a connection while it waits"
            )
        rt.workers = [
            ConsumerWorker(
                redis=rt.redis_client(),
                pool=rt.db(),
                group=settings.service_name,
                consumer=settings.consumer_name if i == 0 else f"{settings.consumer_name}.{i}",
                handlers=handlers,
                options=worker_options(settings),
                metrics=rt.metrics,
            )
            for i in range(settings.consumer_concurrency)
        ]
        if rt.workers:
            rt.metrics.watch("consumer_group", rt.workers[0])  # all of them read the same streams for one group
        tasks = [
            asyncio.create_task(worker.run(), name="consumer-worker" if i == 0 else f"consumer-worker.{i}")
            for i, worker in enumerate(rt.workers)
        ]

        async def check() -> None:
            if any(task.done() for task in tasks):
                raise RuntimeError("consumer worker is not running")

        rt.readiness["consumer"] = check
        yield
        for worker in rt.workers:
            worker.stop()
        await asyncio.gather(*(stop_with_grace(task, settings.consumer_shutdown_grace_s) for task in tasks))

    return context


def worker_options(settings: Settings) -> WorkerOptions:
    return WorkerOptions(
        batch_size=settings.consumer_batch_size,
        block_ms=settings.consumer_block_ms,
        claim_idle_ms=settings.consumer_claim_idle_ms,
        claim_interval_ms=settings.consumer_claim_interval_ms,
        retry_delay_ms=settings.consumer_retry_delay_ms,
        max_deliveries=settings.consumer_max_deliveries,
        trace_retention_s=settings.trace_retention_s,
        delete_idle_consumer_ms=settings.consumer_delete_idle_ms,
    )


def retention_context(event_types: Iterable[str]) -> CleanupContext:
    """Trim the streams of `event_types` (those this service produces) every `STREAM_RETENTION_INTERVAL_S`
    to entries younger than `STREAM_RETENTION_S`, never below what a consumer group still needs, archiving
    them to `STREAM_ARCHIVE_DIR` first when it is set (`common.messaging.retention`). Needs `redis_context`.
    Replicas running it at once take turns per stream (a Redis lock); `STREAM_RETENTION_S=0` turns it off."""
    streams = [stream_for(event_type) for event_type in event_types]

    async def context(app: web.Application) -> AsyncIterator[None]:
        rt = runtime_of(app)
        settings = rt.settings
        if settings.stream_retention_s <= 0 or not streams:
            yield
            return
        trimmer = RetentionLoop(
            rt.redis_client(),
            streams,
            older_than_s=settings.stream_retention_s,
            interval_s=settings.stream_retention_interval_s,
            archive_dir=settings.stream_archive_dir or None,
        )
        task = asyncio.create_task(trimmer.run(), name="stream-retention")
        yield
        trimmer.stop()
        await stop_with_grace(task, 10)

    return context
