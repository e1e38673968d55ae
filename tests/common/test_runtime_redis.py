"""The Redis client every process uses, against a real Redis that restarts."""

from __future__ import annotations

import asyncio

from common.embedded import EmbeddedRedis
from common.runtime import make_redis
from common.settings import Settings


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
