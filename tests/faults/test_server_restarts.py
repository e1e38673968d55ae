"""Redis and PostgreSQL crash and come back on the same port, under a workload.

This module has its own servers, as `swarm up` has them: Redis with its append-only file, PostgreSQL
with fsync on, both in a temporary folder, so they can be killed and restarted without touching the
servers the rest of the session shares.

Each crash is made to hurt: a consumer (notif_svc) is frozen first, so its streams have a backlog
when Redis dies (only the AOF can bring those entries back), and is thawed while PostgreSQL is down,
so it holds a batch it cannot apply (an outage is not the events' fault: they must not be
dead-lettered for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from common.messaging.views import stream_keys
from common.swarm.supervisor import Swarm
from common.testing import ThrowawayServers, throwaway_servers
from tests.faults.conftest import Supervision, api_for, database_urls, make_swarm
from tests.faults.probes import converged, dead_letters, describe, notices_not_stored, redis_client, unsettled_streams
from tests.faults.workload import Workload, until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_servers() -> Iterator[ThrowawayServers]:
    # Outside pytest's basetemp, for the same reason as the session's servers (tests/conftest.py); Redis
    # keeps its append-only file (EmbeddedRedis's default) and PostgreSQL syncs: both get killed here.
    with throwaway_servers("taskswarm-fault-servers-", durable=True) as servers:
        yield servers


@pytest.fixture(scope="module")
def system(own_servers: ThrowawayServers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    swarm = make_swarm(
        tmp_path_factory.mktemp("restarts"),
        redis_url=own_servers.redis.url,
        postgres_url=own_servers.postgres.url(),
        keys_dir=own_servers.keys_dir,
    )
    swarm.start()
    try:
        yield swarm
    finally:
        swarm.stop()


@pytest.fixture
async def redis(system: Swarm) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(system.redis_url)
    yield client
    await client.aclose()


async def _settled(redis: aioredis.Redis) -> str | None:
    return None if await unsettled_streams(redis) else "settled"


async def assert_recovered(system: Swarm, redis: aioredis.Redis, workload: Workload) -> None:
    """Replicas equal their sources, nothing stuck or dead-lettered, no acknowledged write lost."""
    urls = database_urls(system)
    report = await converged(system, urls, timeout_s=30)
    assert report.clean, describe(report)
    assert await until(lambda: _settled(redis), timeout=15, what="no lag and nothing pending") == "settled"
    assert await dead_letters(redis) == []
    problems = await workload.verify()
    assert problems == [], "\n".join(problems)
    assert await workload.notification_gaps(urls["notif_svc"]) == []
    assert await notices_not_stored(redis, urls["notif_svc"]) == []


async def test_a_redis_crash_loses_no_event_thanks_to_its_append_only_file(system, own_servers, redis, http):
    api = api_for(http, system)
    workload = Workload(api, teams=3, seed=2)
    await workload.setup()
    with Supervision(system) as supervision:
        notif = supervision.child("notif_svc.1")
        workload.start()
        try:
            await api.answers(30, succeeded=True)
            supervision.freeze(notif)  # a consumer lagging behind when Redis dies
            await api.answers(45, succeeded=True)
            backlog = await unsettled_streams(redis)
            before = {key: await redis.xrange(key, "-", "+") for key in await stream_keys(redis)}
            own_servers.redis.kill()  # kill -9: only what is in the append-only file survives
            await api.answers(30)  # writes fail meanwhile; the outboxes keep their events
            await asyncio.to_thread(own_servers.redis.start)  # same folder, same port
            supervision.thaw(notif)
            await api.answers(60, succeeded=True)
        finally:
            await workload.stop()
        assert (
            backlog.get("events:newNotif", {}).get("lag", 0) + backlog.get("events:newNotif", {}).get("pending", 0) > 0
        )

        # Every entry the streams held before the crash is still there, with its id.
        for key, entries in before.items():
            kept = {entry_id for entry_id, _ in await redis.xrange(key, "-", "+")}
            assert {entry_id for entry_id, _ in entries} <= kept, f"{key} lost entries in the crash"
        await assert_recovered(system, redis, workload)
    print("backlog at the crash:", backlog, "acknowledged:", workload.ledger.acknowledged(), dict(api.statuses))


async def test_a_postgresql_crash_loses_no_write_and_dead_letters_nothing(system, own_servers, redis, http):
    api = api_for(http, system)
    workload = Workload(api, teams=3, seed=3)
    await workload.setup()
    with Supervision(system) as supervision:
        notif = supervision.child("notif_svc.1")
        workload.start()
        try:
            await api.answers(30, succeeded=True)
            supervision.freeze(notif)  # builds a backlog it will meet while its database is down
            await api.answers(30, succeeded=True)
            own_servers.postgres.stop(mode="immediate")  # a crash: recovery replays the WAL on start
            supervision.thaw(notif)
            held = await until(lambda: unsettled_streams(redis), timeout=5, what="notif_svc holding a batch")
            await api.answers(45)  # writes fail meanwhile
            await asyncio.to_thread(own_servers.postgres.start)  # same folder, same port
            await api.answers(60, succeeded=True)
        finally:
            await workload.stop()
        await assert_recovered(system, redis, workload)
    print("held while PostgreSQL was down:", held, "acknowledged:", workload.ledger.acknowledged(), dict(api.statuses))
    assert api.server_errors == []  # the outage answered 503 (retry), never 500
