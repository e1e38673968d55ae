"""What a running service holds: its settings, pool, Redis client, token verifier, background loops
(outbox relay, consumer workers), readiness checks and metrics.

A plain object with no web framework in it: the service layer of every service takes a `Runtime`,
so importing a use case never loads aiohttp. The aiohttp application creates one per app
(`common.http.app.create_app`) and its cleanup contexts (`common.http.contexts`) fill it at start-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from common.core.settings import Settings
from common.messaging.consumer import ConsumerWorker
from common.messaging.outbox import OutboxRelay
from common.service.metrics import Metrics
from common.service.tokens import TokenVerifier

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool | None = None
    redis: aioredis.Redis | None = None
    verifier: TokenVerifier | None = None
    relay: OutboxRelay | None = None
    workers: list[ConsumerWorker] = field(default_factory=list)  # CONSUMER_CONCURRENCY loops, one group
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    metrics: Metrics = field(init=False)  # this process's Prometheus metrics (common.service.metrics)

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
