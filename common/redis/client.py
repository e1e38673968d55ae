"""The one way this code base makes a Redis client (services, gateway, CLI alike)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from common.core.settings import Settings

# A client, for code outside `common.redis` that only passes one along (to the mechanisms here).
Client = aioredis.Redis
# What a Redis call raises when Redis cannot answer (refused, reset, timed out, an error reply).
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, OSError)


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
