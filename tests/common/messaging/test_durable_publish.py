"""Durable publish (SPEC §5 "Failover"): the relay lets go of an outbox row only once a replica holds its
entry, so a primary killed at any moment loses no event whose row was marked published. Real primary and
replica `redis-server` processes; freezing one with SIGSTOP makes it lag, kill -9 makes it crash."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from common.core.envelope import Event, stream_for
from common.core.settings import Settings, SettingsError
from common.messaging.outbox import OutboxRelay, enqueue
from common.redis.client import make_redis
from common.testing import ReplicatedRedis
from tests.helpers import eventually

STREAM = stream_for("thing")
WAIT_MS = 200


def thing(name: str) -> Event:
    return Event.new("thing", {"name": name}, producer="test", actor_id="someone")


@contextlib.asynccontextmanager
async def relaying(
    pool: asyncpg.Pool, client: aioredis.Redis, min_replicas_ack: int | None = None
) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay(
        pool, client, "unused", batch_size=50, poll_interval_s=0.05, min_replicas_ack=min_replicas_ack,
        wait_timeout_ms=WAIT_MS,
    )  # fmt: skip
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await relay.close()


@contextlib.asynccontextmanager
async def client_of(port: int) -> AsyncIterator[aioredis.Redis]:
    client = make_redis(Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_pool_timeout_s=2))
    try:
        yield client
    finally:
        await client.aclose()


async def test_with_a_frozen_replica_rows_stay_in_the_outbox_until_the_replica_has_their_entries(
    pool: asyncpg.Pool, replicated: ReplicatedRedis
) -> None:
    async with client_of(replicated.primary.port) as primary, client_of(replicated.replica.port) as replica:
        replicated.freeze(replicated.replica)
        with structlog.testing.capture_logs() as logs:
            async with relaying(pool, primary):
                await _enqueue(pool, [thing("durable")])
                await eventually(lambda: _logged(logs, "outbox.replicas_behind"), what="a WAIT that fell short")
                # The primary has the entry, yet the row stays: no replica holds it.
                assert await primary.xlen(STREAM) >= 1
                assert await _outbox_count(pool) == 1
                replicated.thaw(replicated.replica)
                await eventually(lambda: _outbox_empty(pool), timeout=15, what="published once the replica caught up")
        names = {Event.from_fields(f).data["name"] for _, f in await replica.xrange(STREAM)}
        assert names == {"durable"}


async def test_a_forced_failover_loses_no_event_whose_row_was_marked_published(
    pool: asyncpg.Pool, replicated: ReplicatedRedis
) -> None:
    enqueued: list[str] = []
    stop_writing = asyncio.Event()

    async def write() -> None:
        n = 0
        while not stop_writing.is_set():
            events = [thing(f"w{n}-{i}") for i in range(5)]
            await _enqueue(pool, events)
            enqueued.extend(e.id for e in events)
            n += 1
            await asyncio.sleep(0.01)

    async with client_of(replicated.primary.port) as old_primary, client_of(replicated.replica.port) as promoted:
        writer = asyncio.create_task(write())
        async with relaying(pool, old_primary) as relay:
            # Rows let go (WAIT confirmed, deleted, committed), not the stream's length: an XADDed batch still
            # waiting on WAIT when the link is held below falls short and stays in the outbox.
            await eventually(lambda: _relayed(relay, 100), timeout=15, what="events flowing")
            # The replica is cut off: what the relay XADDs now reaches the primary only...
            replicated.link.hold()
            before = await old_primary.xlen(STREAM)
            await eventually(lambda: _stream_length(old_primary, before + 20), timeout=15, what="XADDs")
            # ...and the primary dies with them: frozen mid-batch, then killed.
            replicated.freeze(replicated.primary)
            replicated.primary.kill()
        # The old relay is gone (its claimed batch rolled back); what left the outbox counts as published.
        stop_writing.set()
        await writer
        replicated.link.cut()  # what was in flight to the replica is lost with the primary
        replicated.promote_replica()
        remaining = {str(r["event_id"]) for r in await pool.fetch("SELECT event_id FROM outbox")}
        published = set(enqueued) - remaining
        assert len(published) >= 100
        assert published <= await _ids_in(promoted)
        async with relaying(pool, promoted):
            await eventually(lambda: _outbox_empty(pool), timeout=15, what="the rest published on the promoted node")
        assert set(enqueued) <= await _ids_in(promoted)


async def test_an_explicit_count_overrides_auto_on_a_lone_server(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    # "auto" on a server without replicas waits for none; an explicit 1 waits for a replica that never comes.
    with structlog.testing.capture_logs() as logs:
        async with relaying(pool, redis, min_replicas_ack=1):
            await _enqueue(pool, [thing("stays")])
            await eventually(lambda: _logged(logs, "outbox.replicas_behind", times=2), what="WAITs that fell short")
            assert await _outbox_count(pool) == 1


async def test_an_explicit_zero_overrides_auto_and_publishes_past_a_frozen_replica(
    pool: asyncpg.Pool, replicated: ReplicatedRedis
) -> None:
    async with client_of(replicated.primary.port) as primary:
        replicated.freeze(replicated.replica)
        async with relaying(pool, primary, min_replicas_ack=0):
            await _enqueue(pool, [thing("fast")])
            await eventually(lambda: _outbox_empty(pool), what="published without waiting for the replica")


async def test_auto_on_a_lone_server_never_sends_wait(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    await redis.config_resetstat()
    async with relaying(pool, redis):
        await _enqueue(pool, [thing(f"n{i}") for i in range(120)])
        await eventually(lambda: _outbox_empty(pool), timeout=15, what="outbox drained")
    assert "cmdstat_wait" not in await redis.info("commandstats")
    assert await redis.xlen(STREAM) == 120


@pytest.mark.parametrize(("raw", "expected"), [("auto", None), ("AUTO", None), ("0", 0), ("2", 2)])
def test_redis_min_replicas_ack_reads_auto_or_a_count(raw: str, expected: int | None) -> None:
    assert Settings.from_env({"REDIS_MIN_REPLICAS_ACK": raw}).replicas_to_ack() == expected


@pytest.mark.parametrize("raw", ["-1", "one", ""])
def test_a_malformed_redis_min_replicas_ack_fails_at_start_up(raw: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_MIN_REPLICAS_ACK"):
        Settings.from_env({"REDIS_MIN_REPLICAS_ACK": raw})


async def _enqueue(pool: asyncpg.Pool, events: list[Event]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, events)


async def _ids_in(client: aioredis.Redis) -> set[str]:
    return {fields["id"] for _, fields in await client.xrange(STREAM)}


async def _stream_length(client: aioredis.Redis, n: int) -> bool:
    return bool(await client.xlen(STREAM) >= n)


async def _relayed(relay: OutboxRelay, n: int) -> bool:
    return relay.published >= n


async def _outbox_count(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox")
    return count


async def _outbox_empty(pool: asyncpg.Pool) -> bool:
    return await _outbox_count(pool) == 0


async def _logged(logs: list[dict[str, object]], event: str, times: int = 1) -> bool:
    return sum(entry["event"] == event for entry in logs) >= times
