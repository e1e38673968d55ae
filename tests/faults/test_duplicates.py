"""Duplicated and reordered delivery: already-consumed entries are added to their streams again, in
shuffled order across streams, while the workload runs.

Two kinds of copies:
- exact copies (same envelope, so the same event id): a redelivery, which the consumers' inboxes
  must recognise, so nothing is applied twice (notifications not doubled, counts not bumped);
- republished copies of entity events under a new event id (same data and version, as a producer
  re-publishing state would send): the inbox cannot recognise them, so they reach the handlers as
  stale, late, out-of-order events (an old card version after newer ones, a newCard after its
  deleteCard, an old comment count after newer ones), and the version guards and sticky tombstones
  must ignore them.
Two comment_svc replicas share the load, so copies also race each other across consumers.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from common.core.envelope import stream_for
from common.messaging.consumer import WorkerOptions
from common.messaging.views import stream_keys
from common.redis.ids import entry_key
from common.swarm.supervisor import Swarm
from tests.faults.audit import Audit
from tests.faults.conftest import api_for, database_urls, running_system
from tests.faults.probes import (
    converged,
    dead_letters,
    describe,
    inbox_mismatch,
    notice_mismatch,
    redis_client,
    stream_entries,
    unsettled_streams,
    xrange,
)
from tests.faults.workload import Workload, until

pytestmark = pytest.mark.e2e

NOTICES = stream_for("newNotif")  # notifications carry no version: only exact copies make sense


@pytest.fixture(scope="module")
def system(servers, tmp_path_factory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    with running_system(servers, tmp_path_factory.mktemp("duplicates"), replicas={"comment_svc": 2}) as swarm:
        yield swarm


@pytest.fixture
async def redis(system: Swarm) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(system.redis_url)
    yield client
    await client.aclose()


class Chaos:
    """Adds copies of already-consumed entries to their streams, shuffled across streams."""

    def __init__(self, redis: aioredis.Redis, seed: int) -> None:
        self.redis = redis
        self.random = random.Random(seed)
        self.added: Counter[str] = Counter()

    async def run(self, stop: asyncio.Event, interval_s: float = 0.1) -> None:
        while not stop.is_set():
            await self.once()
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                pass

    async def once(self) -> None:
        keys = await stream_keys(self.redis)
        copies: list[tuple[str, dict[str, str], str]] = []
        for key in self.random.sample(keys, min(4, len(keys))):
            entries = await self._consumed(key)
            for _entry_id, fields in self.random.sample(entries, min(6, len(entries))):
                copies.append((key, fields, "exact"))
                if key != NOTICES and self.random.random() < 0.5:
                    copies.append((key, {**fields, "id": str(uuid.uuid4())}, "republished"))
        self.random.shuffle(copies)
        for key, fields, kind in copies:
            await self.redis.xadd(key, fields)  # type: ignore[arg-type]
            self.added[kind] += 1

    async def _consumed(self, key: str) -> list[tuple[str, dict[str, str]]]:
        """Entries every group of the stream has been handed already."""
        groups = await self.redis.xinfo_groups(key)
        if not groups:
            return []
        delivered = min((g["last-delivered-id"] for g in groups), key=entry_key)
        if delivered == "0-0":
            return []
        return await xrange(self.redis, key, "-", delivered)


async def test_duplicated_and_reordered_deliveries_change_nothing(system, servers, redis, http):
    api = api_for(http, system)
    options = WorkerOptions(
        block_ms=500, claim_idle_ms=1500, claim_interval_ms=300, retry_delay_ms=50, max_deliveries=3
    )
    event_types = [key.removeprefix("events:") for key in await stream_keys(redis)]
    assert {"newCard", "deleteCard", "newComment", "newNotif", "updateUser"} <= set(event_types)
    audit = await Audit(
        redis, servers.postgres.url(), f"faults_audit_{uuid.uuid4().hex[:8]}", event_types, options
    ).start()
    workload = Workload(api, teams=3, seed=6, doom_after_s=3.0)
    chaos = Chaos(redis, seed=6)
    stop = asyncio.Event()
    try:
        await workload.setup()
        workload.start()
        chaotic = asyncio.ensure_future(chaos.run(stop))
        try:
            await api.answers(180, succeeded=True)
        finally:
            stop.set()
            await chaotic
            await workload.stop()
        assert chaos.added["exact"] > 50 and chaos.added["republished"] > 50, chaos.added

        urls = database_urls(system)
        report = await converged(system, urls, timeout_s=30)
        assert report.clean, describe(report)
        assert await until(lambda: _settled(redis), timeout=15, what="every group caught up") == "settled"
        assert await dead_letters(redis) == []

        # Applied once each: every distinct event id of a service's streams is in its inbox, once.
        for service in ("project_svc", "comment_svc", "notif_svc"):
            assert await inbox_mismatch(redis, service, urls[service]) == {
                "not applied": 0,
                "applied but not in its streams": 0,
            }, service
        # The audit's handler has no idempotency of its own: one row per event id means the inbox
        # stopped every exact copy, across all streams.
        rows = await audit.rows_per_event()
        doubled = {event_id: n for event_id, n in rows.items() if n != 1}
        assert doubled == {}
        all_ids = {f["id"] for key in await stream_keys(redis) for _, f in await stream_entries(redis, key)}
        assert set(rows) == all_ids

        # Notifications not doubled, none missing (the checker's invariant says the same per row).
        missing, extra = await notice_mismatch(redis, urls["notif_svc"])
        assert (missing, extra) == ([], 0)

        # Acknowledged writes are all there, comment counts exact, deleted cards not resurrected.
        problems = await workload.verify()
        assert problems == [], "\n".join(problems)
        assert await workload.notification_gaps(urls["notif_svc"]) == []
    finally:
        await audit.stop()
    print("copies added:", dict(chaos.added), "acknowledged:", workload.ledger.acknowledged(), dict(api.statuses))


async def _settled(redis: aioredis.Redis) -> str | None:
    return None if await unsettled_streams(redis) else "settled"
