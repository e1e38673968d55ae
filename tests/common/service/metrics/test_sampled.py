"""Values a service samples when scraped: its consumer group's lag and pending entries (from Redis) and
its outbox backlog (from PostgreSQL), after a scripted scenario that leaves both behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from common.core.envelope import Event, stream_for
from common.http.app import runtime_of
from common.messaging.outbox import enqueue
from common.service.runtime import Runtime
from project_svc.app import create_app
from tests.common.service.metrics.scrape import scrape, value
from tests.helpers import eventually, publish, user_record

USERS = stream_for("newUser")


@pytest.fixture
async def client(make_settings, redis) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    async with TestClient(TestServer(create_app(make_settings(service_name="project_svc")))) as client:
        yield client


def runtime(client: TestClient) -> Runtime:
    assert client.app is not None
    return runtime_of(client.app)


async def stop_task(name: str) -> None:
    """Wait for the app's background task `name` to return (after its loop was asked to stop)."""
    task = next(t for t in asyncio.all_tasks() if t.get_name() == name)
    await asyncio.wait_for(task, 10)


async def test_events_published_while_the_consumer_is_stopped_show_as_lag_and_pending(
    client: TestClient, redis: aioredis.Redis
) -> None:
    rt = runtime(client)
    assert rt.workers

    async def groups_made() -> bool:
        return (
            any(g["name"] == "project_svc" for g in await redis.xinfo_groups(USERS))
            if await redis.exists(USERS)
            else False
        )

    await eventually(groups_made, what="the worker's consumer groups")
    loops = [t for t in asyncio.all_tasks() if t.get_name().startswith("consumer-worker")]
    for worker in rt.workers:
        worker.stop()
    await asyncio.wait_for(asyncio.gather(*loops), 10)
    for _ in range(3):
        await publish(redis, Event.new("newUser", user_record(), producer="auth_svc"))
    await redis.xreadgroup("project_svc", "ghost", {USERS: ">"}, count=1)  # handed out, never acknowledged

    series = await scrape(client)

    users = {"service": "project_svc", "stream": USERS, "group": "project_svc"}
    assert value(series, "taskswarm_consumer_lag", **users) == 2
    assert value(series, "taskswarm_consumer_pending", **users) == 1
    comments = {**users, "stream": stream_for("newComment")}  # another stream the group reads: caught up
    assert value(series, "taskswarm_consumer_lag", **comments) == 0
    assert value(series, "taskswarm_consumer_pending", **comments) == 0
    assert (
        value(series, "taskswarm_metrics_sample_errors_total", service="project_svc", source="consumer_group") is None
    )


async def test_rows_the_stopped_relay_left_show_as_outbox_backlog_with_the_age_of_the_oldest(
    client: TestClient,
) -> None:
    rt = runtime(client)
    assert rt.relay is not None
    rt.relay.stop()
    await stop_task("outbox-relay")
    old, new = (Event.new("newProject", {}, producer="project_svc") for _ in range(2))
    async with rt.db().acquire() as conn, conn.transaction():
        await enqueue(conn, [old, new])
        await conn.execute("UPDATE outbox SET created_at = now() - interval '30 seconds' WHERE event_id = $1", old.id)

    series = await scrape(client)

    assert value(series, "taskswarm_outbox_backlog", service="project_svc") == 2
    age = value(series, "taskswarm_outbox_oldest_age_seconds", service="project_svc")
    assert age is not None and 30 <= age < 60


async def test_a_caught_up_service_reports_no_backlog_and_no_lag(client: TestClient, redis: aioredis.Redis) -> None:
    await publish(redis, Event.new("newUser", user_record(), producer="auth_svc"))
    users = {"service": "project_svc", "stream": USERS, "group": "project_svc"}

    async def caught_up() -> bool:
        series = await scrape(client)
        return (
            value(series, "taskswarm_consumer_lag", **users) == 0
            and value(series, "taskswarm_consumer_pending", **users) == 0
        )

    await eventually(caught_up, what="the group to catch up")
    series = await scrape(client)
    assert value(series, "taskswarm_outbox_backlog", service="project_svc") == 0
    assert value(series, "taskswarm_outbox_oldest_age_seconds", service="project_svc") == 0
    applied = {"service": "project_svc", "group": "project_svc", "event_type": "newUser", "outcome": "applied"}
    assert value(series, "taskswarm_events_consumed_total", **applied) == 1


async def test_a_service_runs_its_consumer_loops_as_consumers_of_one_group(
    make_settings, redis: aioredis.Redis
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(service_name="project_svc", consumer_name="p-1", consumer_concurrency=3)
    async with TestClient(TestServer(create_app(settings))) as client:
        rt = runtime(client)
        assert [w.consumer for w in rt.workers] == ["p-1", "p-1.1", "p-1.2"]
        users = [user_record() for _ in range(300)]
        for user in users:
            await publish(redis, Event.new("newUser", user, producer="auth_svc"))

        async def replicated() -> bool:
            return await rt.db().fetchval("SELECT count(*) FROM users") == len(users)

        await eventually(replicated, what="every user replicated once")
        consumers = {c["name"] for c in await redis.xinfo_consumers(USERS, "project_svc")}
        assert consumers == {"p-1", "p-1.1", "p-1.2"}
        assert (await redis.xpending(USERS, "project_svc"))["pending"] == 0
