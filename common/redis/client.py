"""The one way this code base makes a Redis client (services, gateway, CLI alike)."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff


def make_redis(url: str) -> aioredis.Redis:
    # Retries: after a Redis restart, every pooled connection is dead and each fails its next command
    # ("Connection closed by server"), long after Redis is back. A client built from a URL gets no
    # retry policy from redis-py, so one failing command meant one 503; now it reconnects and retries.
    return aioredis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.25), retries=2),
    )
