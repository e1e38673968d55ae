"""Event metrics: what the outbox relay publishes, by type; what the worker settles, by group, type
and outcome; and what happens to a sample that fails."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client import Gauge

from common.core.envelope import Event, stream_for
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.outbox import OutboxRelay, enqueue
from common.messaging.tables import COMMON_MIGRATIONS
from common.redis.keys import REPLAY_FOR_FIELD
from common.service.metrics import Metrics
from tests.common.service.metrics.scrape import parse, value
from tests.helpers import eventually

CONSUMED = "taskswarm_events_consumed_total"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database_url, [("common", COMMON_MIGRATIONS)])
    pool = await create_pool(database_url, 1, 5)
    yield pool
    await pool.close()


def event(event_type: str, event_id: str | None = None) -> Event:
    return Event(type=event_type, data={}, producer="test", id=event_id or str(uuid.uuid4()))


async def test_the_relay_counts_published_events_by_type(pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
    metrics = Metrics("demo_svc")
    relay = OutboxRelay(pool, redis, "unused", metrics=metrics)
    async with pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [event("cardMoved"), event("cardMoved"), event("cardArchived")])

    assert await relay.relay_once() == 3

    series = parse((await metrics.render()).decode())
    published = "taskswarm_events_published_total"
    assert value(series, published, service="demo_svc", event_type="cardMoved") == 2
    assert value(series, published, service="demo_svc", event_type="cardArchived") == 1


async def test_the_worker_counts_each_outcome_by_group_and_event_type(
    pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    async def accept(event: Event, conn: asyncpg.Connection) -> None:
        pass

    async def refuse(event: Event, conn: asyncpg.Connection) -> None:
        raise ValueError("poison")

    metrics = Metrics("demo_svc")
    worker = ConsumerWorker(
        redis=redis,
        pool=pool,
        group="demo_svc",
        consumer="demo-1",
        handlers={"good": accept, "poison": refuse},
        options=WorkerOptions(block_ms=50, claim_interval_ms=50, retry_delay_ms=10, max_deliveries=2),
        metrics=metrics,
    )
    twice = event("good")
    replay = {**event("good").to_fields(), REPLAY_FOR_FIELD: "another_svc"}  # not ours to apply
    # Entry ids distinct across the two streams: ids repeat from stream to stream, which is not tested here.
    entries = [("good", event("good").to_fields()), ("good", twice.to_fields()), ("good", twice.to_fields())]
    entries += [("good", replay), ("poison", event("poison").to_fields())]
    for seq, (event_type, fields) in enumerate(entries, start=1):
        await redis.xadd(stream_for(event_type), fields, id=f"1-{seq}")  # type: ignore[arg-type]

    async def settled() -> bool:
        if await redis.xlen("events:dlq") != 1:  # by then, the groups exist
            return False
        pending = [await redis.xpending(stream_for(t), "demo_svc") for t in ("good", "poison")]
        return all(p["pending"] == 0 for p in pending)

    task = asyncio.create_task(worker.run())
    try:
        await eventually(settled, what="every entry acknowledged or dead-lettered")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)

    series = parse((await metrics.render()).decode())
    good = {"service": "demo_svc", "group": "demo_svc", "event_type": "good"}
    poison = {"service": "demo_svc", "group": "demo_svc", "event_type": "poison"}
    assert value(series, CONSUMED, **good, outcome="applied") == 2
    assert value(series, CONSUMED, **good, outcome="duplicate") == 1
    assert value(series, CONSUMED, **good, outcome="skipped") == 1
    assert value(series, CONSUMED, **poison, outcome="retried") == 1  # delivery 1 of 2
    assert value(series, CONSUMED, **poison, outcome="dead_lettered") == 1
    assert value(series, CONSUMED, **poison, outcome="applied") is None


async def test_a_failed_sample_drops_its_series_and_is_counted() -> None:
    metrics = Metrics("demo_svc")
    probe = Gauge("taskswarm_test_probe", "a sampled value", ("service",), registry=metrics.registry)
    broken = False

    async def sampler() -> list[tuple[Gauge, tuple[str, ...], float]]:
        if broken:
            raise ConnectionError("redis is down")
        return [(probe, ("demo_svc",), 7.0)]

    metrics.add_sampler("probe", sampler)
    assert value(parse((await metrics.render()).decode()), "taskswarm_test_probe", service="demo_svc") == 7

    broken = True
    series = parse((await metrics.render()).decode())

    assert value(series, "taskswarm_test_probe", service="demo_svc") is None  # absent, not stale
    errors = "taskswarm_metrics_sample_errors_total"
    assert value(series, errors, service="demo_svc", source="probe") == 1
