"""The transactional outbox and its relay, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
import structlog

from common.core.envelope import ENVELOPE_FIELDS, Event, stream_for
from common.core.settings import Settings
from common.messaging.outbox import OutboxRelay, enqueue
from common.redis.client import make_redis
from common.swarm.embedded import EmbeddedRedis
from tests.helpers import eventually

STREAM = stream_for("thing")


def thing(name: str) -> Event:
    return Event.new("thing", {"name": name}, producer="test", actor_id="someone")


@contextlib.asynccontextmanager
async def relaying(pool, redis, database_url, poll_interval_s: float = 0.2) -> AsyncIterator[OutboxRelay]:  # type: ignore[no-untyped-def]
    relay = OutboxRelay(pool, redis, database_url, batch_size=50, poll_interval_s=poll_interval_s)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()


async def test_a_committed_event_is_published_with_every_envelope_field(pool, redis, database_url):
    event = thing("committed")
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [event])
    async with relaying(pool, redis, database_url):
        await eventually(lambda: _outbox_empty(pool), what="event relayed")
    [(_, fields)] = await redis.xrange(STREAM)
    assert set(fields) == set(ENVELOPE_FIELDS)
    assert Event.from_fields(fields) == event
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_rolled_back_transaction_publishes_nothing(pool, redis, database_url):
    class Boom(Exception):
        pass

    with contextlib.suppress(Boom):
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [thing("phantom")])
            raise Boom
    async with relaying(pool, redis, database_url) as relay:
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [thing("real")])
        await eventually(lambda: _outbox_empty(pool), what="the committed event relayed")
    assert [Event.from_fields(f).data["name"] for _, f in await redis.xrange(STREAM)] == ["real"]
    assert relay.published == 1


async def test_notify_wakes_the_relay_without_waiting_for_the_poll(pool, redis, database_url):
    async with relaying(pool, redis, database_url, poll_interval_s=60) as relay:
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [thing("first")])
        # Once the first event is out, the relay has finished a pass and waits up to 60 s for news.
        await eventually(lambda: _outbox_empty(pool), what="first event relayed")
        assert relay._listener is not None
        async with pool.acquire() as conn, conn.transaction():
            await enqueue(conn, [thing("prompt")])
        await eventually(lambda: _stream_length(redis, 2), timeout=2, what="published on NOTIFY")


async def test_events_wait_in_the_outbox_while_redis_is_down_and_leave_when_it_is_back(pool, database_url, tmp_path):
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = make_redis(Settings(redis_url=server.url))
    try:
        server.stop()
        async with relaying(pool, client, database_url, poll_interval_s=0.1):
            with structlog.testing.capture_logs() as logs:
                async with pool.acquire() as conn, conn.transaction():
                    await enqueue(conn, [thing("patient")])
                await eventually(lambda: _relay_failed(logs, times=2), what="failed relay attempts")
            assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
            server.start()  # same port, same data folder
            await eventually(lambda: _outbox_empty(pool), timeout=10, what="relayed after Redis came back")
        assert await client.xlen(STREAM) == 1
    finally:
        await client.aclose()
        server.stop()


async def test_two_relays_publish_each_event_exactly_once(pool, redis, database_url):
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [thing(f"n{i}") for i in range(400)])
    async with relaying(pool, redis, database_url), relaying(pool, redis, database_url):
        # A deadline, not a speed claim: a loaded CI machine may take seconds for 8 batches of 50.
        await eventually(lambda: _outbox_empty(pool), timeout=30, what="outbox drained")
    ids = [fields["id"] for _, fields in await redis.xrange(STREAM)]
    assert len(ids) == 400
    assert len(set(ids)) == 400


async def _stream_length(redis: aioredis.Redis, n: int) -> bool:
    return await redis.xlen(STREAM) >= n


async def _outbox_empty(pool: asyncpg.Pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def _relay_failed(logs: list[dict], times: int) -> bool:  # type: ignore[type-arg]
    return sum(entry["event"] == "outbox.relay_failed" for entry in logs) >= times
