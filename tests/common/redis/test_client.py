"""The Redis client every process uses, against a real Redis: its bounded, blocking pool, and restarts."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError

from common.core.settings import Settings, SettingsError
from common.http.app import RUNTIME
from common.http.contexts import consumer_context
from common.redis.client import make_redis
from common.service.runtime import Runtime
from common.swarm.embedded import EmbeddedRedis


async def test_pooled_connections_survive_a_redis_restart_without_a_failed_command(tmp_path):  # type: ignore[no-untyped-def]
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = make_redis(Settings(redis_url=server.url))
    try:
        await asyncio.gather(*(client.execute_command("CLIENT", "ID") for _ in range(8)))  # 8 pooled
        server.stop()
        await asyncio.to_thread(server.start)  # same port: every pooled connection is now dead
        for _ in range(5):  # each would fail once ("Connection closed by server") without retries
            assert await asyncio.gather(*(client.exists("x") for _ in range(4))) == [0, 0, 0, 0]
    finally:
        await client.aclose()
        server.stop()


async def test_a_burst_bigger_than_the_pool_waits_for_connections_instead_of_failing(servers, redis):  # type: ignore[no-untyped-def]
    client = make_redis(Settings(redis_url=servers.redis.url, redis_pool_max=3))
    try:
        ids = await asyncio.gather(*(client.execute_command("CLIENT", "ID") for _ in range(200)))
    finally:
        await client.aclose()

    assert len(ids) == 200
    assert len(set(ids)) <= 3  # never more connections than the pool's size


async def test_a_wait_for_a_connection_past_the_timeout_is_a_redis_error(servers, redis):  # type: ignore[no-untyped-def]
    client = make_redis(Settings(redis_url=servers.redis.url, redis_pool_max=1, redis_pool_timeout_s=0.1))
    held = await client.connection_pool.get_connection()
    try:
        with pytest.raises(RedisConnectionError):  # a RedisError: every check refuses on it (503)
            await client.exists("x")
    finally:
        await client.connection_pool.release(held)
        await client.aclose()


async def test_a_pool_no_bigger_than_the_consumer_loops_is_refused_at_start(servers):  # type: ignore[no-untyped-def]
    app = web.Application()
    app[RUNTIME] = Runtime(Settings(redis_url=servers.redis.url, redis_pool_max=2, consumer_concurrency=2))
    starting = consumer_context({})(app)

    with pytest.raises(SettingsError, match="REDIS_POOL_MAX"):
        await starting.__anext__()
