"""Trimming against a real Redis: only what every consumer group has delivered and acknowledged goes."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from common.core.envelope import DEAD_LETTER_STREAM, Event
from common.core.errors import Conflict, NotFound
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging import retention
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.handlers import after_commit
from common.messaging.retention import apply_retention, parse_age, safe_point
from common.messaging.tables import COMMON_MIGRATIONS
from tests.common.messaging.retention.conftest import add, consume, ids_of
from tests.helpers import eventually

CARDS = "events:newCard"


async def trimmed(redis, **options) -> retention.StreamRetention:  # type: ignore[no-untyped-def]
    [item] = (await apply_retention(redis, streams=[CARDS], **options)).items
    return item


async def test_a_lagging_group_keeps_every_entry_it_has_not_been_delivered(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(6)]
    await consume(redis, CARDS, "fast_svc", "fast-1")  # all six, acknowledged
    await consume(redis, CARDS, "slow_svc", "slow-1", count=2)  # two, acknowledged; four not delivered yet

    item = await trimmed(redis)

    assert await ids_of(redis, CARDS) == ids[2:]
    assert (item.removed, item.left, item.stopped_by) == (2, 4, retention.SAFE_POINT)
    assert item.holder is not None
    assert (item.holder.group, item.holder.reason, item.holder.entry_id) == ("slow_svc", "not_delivered", ids[1])
    assert item.first_kept is not None and item.first_kept.id == ids[2]


async def test_a_pending_entry_on_a_dead_consumer_is_kept_with_everything_after_it(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(5)]
    await consume(redis, CARDS, "comment_svc", "live-1", count=1)
    await consume(redis, CARDS, "comment_svc", "dead-1", count=1, ack=False)  # it crashed holding ids[1]
    await consume(redis, CARDS, "comment_svc", "live-1")  # the rest, acknowledged

    item = await trimmed(redis)

    assert await ids_of(redis, CARDS) == ids[1:]
    assert item.holder is not None
    assert (item.holder.reason, item.holder.entry_id, item.holder.consumer) == ("pending", ids[1], "dead-1")
    # Once the live consumer reclaims and acknowledges it, the next trim takes it and the rest.
    claimed = await redis.xclaim(CARDS, "comment_svc", "live-1", min_idle_time=0, message_ids=[ids[1]])
    await redis.xack(CARDS, "comment_svc", claimed[0][0])
    item = await trimmed(redis)
    assert (await ids_of(redis, CARDS), item.stopped_by, item.removed) == ([], retention.END, 4)


async def test_an_entry_unacknowledged_in_one_group_is_kept_although_another_consumed_it(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(4)]
    await consume(redis, CARDS, "project_svc", "p-1")  # everything, acknowledged
    await consume(redis, CARDS, "comment_svc", "c-1", count=2)
    await consume(redis, CARDS, "comment_svc", "c-1", count=1, ack=False)  # ids[2] delivered, not acked
    await consume(redis, CARDS, "comment_svc", "c-1")  # ids[3] acknowledged

    item = await trimmed(redis, older_than_s=0)

    assert await ids_of(redis, CARDS) == ids[2:]
    assert item.holder is not None
    assert (item.holder.group, item.holder.reason, item.holder.entry_id) == ("comment_svc", "pending", ids[2])


async def test_a_stream_no_group_reads_is_never_trimmed(redis):
    ids = [await add(redis, "newCard", f"c{i}", days_ago=200 - i) for i in range(3)]

    item = await trimmed(redis, older_than_s=0)

    assert await ids_of(redis, CARDS) == ids
    assert (item.stopped_by, item.removed, item.holder) == (retention.NO_GROUPS, 0, None)


async def test_a_group_that_never_read_holds_everything(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(3)]
    await consume(redis, CARDS, "fast_svc", "f-1")
    await redis.xgroup_create(CARDS, "new_svc", id="0")

    item = await trimmed(redis)

    assert (await ids_of(redis, CARDS), item.removed) == (ids, 0)
    assert item.holder is not None and (item.holder.group, item.holder.entry_id) == ("new_svc", "0-0")


async def test_the_age_limit_keeps_recent_entries_even_when_consumed(redis):
    old = [await add(redis, "newCard", f"old{i}", days_ago=100 - i) for i in range(3)]
    recent = [await add(redis, "newCard", f"recent{i}", days_ago=5 - i) for i in range(2)]
    await consume(redis, CARDS, "comment_svc", "c-1")

    item = await trimmed(redis, older_than_s=parse_age("90d"))

    assert await ids_of(redis, CARDS) == recent
    assert (item.removed, item.stopped_by, item.holder) == (len(old), retention.AGE, None)
    # Below the age limit, the safe point still rules: a pending old entry stops it earlier.
    late = await add(redis, "newCard", "late")
    await consume(redis, CARDS, "comment_svc", "c-1", ack=False)
    assert (await trimmed(redis, older_than_s=0)).stopped_by == retention.SAFE_POINT
    assert await ids_of(redis, CARDS) == [late]


async def test_trimming_everything_keeps_the_groups_and_new_entries_still_flow(redis):
    [await add(redis, "newCard", f"c{i}") for i in range(3)]
    await consume(redis, CARDS, "comment_svc", "c-1")

    item = await trimmed(redis)
    assert (item.removed, item.left, item.stopped_by, item.first_kept) == (3, 0, retention.END, None)

    fresh = await add(redis, "newCard", "fresh")
    assert await consume(redis, CARDS, "comment_svc", "c-1") == [fresh]


async def test_a_dry_run_reports_the_same_and_changes_nothing(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(5)]
    await consume(redis, CARDS, "comment_svc", "c-1", count=3)

    planned = await trimmed(redis, dry_run=True)
    assert await ids_of(redis, CARDS) == ids
    done = await trimmed(redis)

    assert (
        (planned.removed, planned.left, planned.stopped_by)
        == (done.removed, done.left, done.stopped_by)
        == (
            3,
            2,
            retention.SAFE_POINT,
        )
    )
    assert planned.first_kept == done.first_kept


async def test_the_dead_letter_stream_is_never_trimmed(redis):
    await redis.xadd(DEAD_LETTER_STREAM, {"stream": CARDS, "entry_id": "1-0", "group": "g", "error": "boom"})
    await redis.xgroup_create(DEAD_LETTER_STREAM, "someone", id="$")  # even if something reads it
    await add(redis, "newCard", "c0")
    await consume(redis, CARDS, "comment_svc", "c-1")

    report = await apply_retention(redis, older_than_s=0)

    assert [item.stream for item in report.items] == [CARDS]
    assert await redis.xlen(DEAD_LETTER_STREAM) == 1
    with pytest.raises(Conflict):
        await apply_retention(redis, streams=["dlq"])
    with pytest.raises(NotFound):
        await apply_retention(redis, streams=["noSuchThing"])
    assert (await apply_retention(redis, streams=["noSuchThing"], skip_missing=True)).items == []


async def test_a_stream_another_trimmer_is_working_on_is_skipped(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(2)]
    await consume(redis, CARDS, "comment_svc", "c-1")
    await redis.set(retention.LOCK_PREFIX + CARDS, "someone-else", px=10_000)

    item = await trimmed(redis)

    assert (item.stopped_by, item.removed, await ids_of(redis, CARDS)) == (retention.LOCKED, 0, ids)
    assert await redis.get(retention.LOCK_PREFIX + CARDS) == "someone-else"  # not ours to release
    await redis.delete(retention.LOCK_PREFIX + CARDS)
    assert (await trimmed(redis)).removed == 2
    assert await redis.exists(retention.LOCK_PREFIX + CARDS) == 0  # released after use


async def test_safe_point_is_the_oldest_entry_any_group_still_needs(redis):
    ids = [await add(redis, "newCard", f"c{i}") for i in range(4)]
    assert (await safe_point(redis, "newCard")).keep_from is None
    await consume(redis, CARDS, "a_svc", "a-1", count=3)
    await consume(redis, CARDS, "b_svc", "b-1", count=2, ack=False)

    point = await safe_point(redis, "newCard")

    assert (point.keep_from, point.groups) == (ids[0], ["a_svc", "b_svc"])
    assert point.holder is not None and point.holder.consumer == "b-1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("45s", 45), ("3600", 3600), ("2w", 1209600)],
)
def test_ages_are_read_with_their_unit(text: str, seconds: int) -> None:
    assert parse_age(text) == seconds
    assert parse_age(retention.format_age(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1d", "1.5d", "9x", "90 days"])
def test_malformed_ages_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_age(text)


async def test_entries_a_real_worker_is_still_retrying_survive_trimming_and_are_applied_later(redis, database_url):
    await migrate(database_url, [("common", COMMON_MIGRATIONS)])
    pool = await create_pool(database_url, 1, 4)
    applied: list[str] = []
    broken = True

    async def handle(event: Event, conn: asyncpg.Connection) -> None:
        if broken and event.data["name"] == "poison":
            raise ValueError("cannot digest poison yet")

        async def record() -> None:  # once committed: a rolled-back batch is redone, a handler runs again
            applied.append(event.data["name"])

        after_commit(record)

    options = WorkerOptions(
        batch_size=10, block_ms=50, claim_idle_ms=60_000, claim_interval_ms=50, retry_delay_ms=20, max_deliveries=1000
    )
    worker = ConsumerWorker(
        redis=redis, pool=pool, group="comment_svc", consumer="c-1", handlers={"newCard": handle}, options=options
    )
    task = asyncio.create_task(worker.run())
    try:
        await add(redis, "newCard", "before")
        poison = await add(redis, "newCard", "poison")
        await add(redis, "newCard", "after")
        await eventually(lambda: _applied(applied, ["before", "after"]), what="the healthy events applied")

        item = await trimmed(redis, older_than_s=0)

        assert item.holder is not None and (item.holder.reason, item.holder.entry_id) == ("pending", poison)
        assert (await ids_of(redis, CARDS))[0] == poison
        broken = False
        await eventually(lambda: _applied(applied, ["before", "after", "poison"]), what="poison applied once fixed")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await pool.close()


async def _applied(applied: list[str], expected: list[str]) -> bool:
    return applied == expected
