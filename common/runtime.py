"""What a running service holds (pool, Redis, verifier, background loops) and how it is wired.

Each `*_context` below is an aiohttp `cleanup_ctx`: it opens a resource or starts a loop at start-up
and closes or stops it at shutdown, in reverse order. A service's `app.py` picks the ones it needs.
Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from common.db import COMMON_MIGRATIONS, create_pool, migrate
from common.events import stream_for
from common.metrics import Metrics
from common.outbox import OutboxRelay
from common.retention import RetentionLoop
from common.settings import Settings, SettingsError
from common.tokens import TokenVerifier
from common.worker import ConsumerWorker, Handler, WorkerOptions

log = structlog.get_logger("runtime")

ReadinessCheck = Callable[[], Awaitable[None]]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool | None = None
    redis: aioredis.Redis | None = None
    verifier: TokenVerifier | None = None
    relay: OutboxRelay | None = None
    workers: list[ConsumerWorker] = field(default_factory=list)  # CONSUMER_CONCURRENCY loops, one group
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    metrics: Metrics = field(init=False)  # this process's Prometheus metrics (common.metrics)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self.settings.service_name, self.settings.consumer_name)

    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "database_context not installed"
        return self.pool

    def redis_client(self) -> aioredis.Redis:
        assert self.redis is not None, "redis_context not installed"
        return self.redis

    def token_verifier(self) -> TokenVerifier:
        assert self.verifier is not None, "redis_context not installed"
        return self.verifier


def runtime_of(app: web.Application) -> Runtime:
    from common.web import RUNTIME  # runtime is imported by web; avoid the cycle at import time

    return app[RUNTIME]


def make_redis(settings: Settings, *, max_connections: int | None = None) -> aioredis.Redis:
    """A client on `REDIS_URL` with a blocking pool of `REDIS_POOL_MAX` connections (or `max_connections`).

    redis-py's default pool raises MaxConnectionsError the moment a burst needs one connection more than
    its cap, so a burst of healthy requests failed with 503. Here a request waits for a connection to
    come back (commands hold one for well under a millisecond) and only a wait beyond
    `REDIS_POOL_TIMEOUT_S` fails (ConnectionError "No connection available": every caller refuses then,
    503). The connect timeout is the same: a Redis that does not accept connections must not hold a
    pool slot for the kernel's TCP timeout (minutes).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections or settings.redis_pool_max,
        timeout=settings.redis_pool_timeout_s,
        socket_connect_timeout=settings.redis_pool_timeout_s,
        decode_responses=True,
        health_check_interval=30,
        # Retries: after a Redis restart, every pooled connection is dead and each fails its next command
        # ("Connection closed by server"), long after Redis is back. A client built from a URL gets no
        # retry policy from redis-py, so one failing command meant one 503; now it reconnects and retries.
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), retries=2),
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


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


async def _stop_task(task: asyncio.Task[None], grace_s: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(task), grace_s)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
    )
    task = asyncio.create_task(rt.relay.run(), name="outbox-relay")
    yield
    rt.relay.stop()
    await _stop_task(task, 5)
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
        await asyncio.gather(*(_stop_task(task, settings.consumer_shutdown_grace_s) for task in tasks))

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
    them to `STREAM_ARCHIVE_DIR` first when it is set (`common.retention`). Needs `redis_context`.
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
        await _stop_task(task, 10)

    return context
