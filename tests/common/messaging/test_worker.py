"""The consumer-group worker against a real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import structlog

from common.core.envelope import DEAD_LETTER_STREAM, Event, stream_for
from common.db.migrations import migrate
from common.db.pool import create_pool
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.handlers import BulkHandler, after_commit, collecting_after_commit
from common.messaging.tables import COMMON_MIGRATIONS
from common.redis.ids import entry_key
from common.redis.keys import REPLAY_FOR_FIELD, ack_record_key
from tests.helpers import eventually

STREAM = stream_for("thing")
GROUP = "things_svc"


async def publish(redis, name: str, event_id: str | None = None) -> Event:  # type: ignore[no-untyped-def]
    event = Event(
        type="thing",
        data={"name": name},
        producer="test",
        correlation_id=f"corr-{name}",
        id=event_id or str(uuid.uuid4()),
    )
    await redis.xadd(STREAM, event.to_fields())
    return event


async def insert_thing(event: Event, conn: asyncpg.Connection) -> None:
    await conn.execute("INSERT INTO things (event_id, name) VALUES ($1, $2)", event.id, event.data["name"])


async def names(pool: asyncpg.Pool) -> list[str]:
    return [r["name"] for r in await pool.fetch("SELECT name FROM things ORDER BY applied_at, name")]


def options(**overrides: int) -> WorkerOptions:
    base = {
        "batch_size": 10,
        "block_ms": 50,
        "claim_idle_ms": 60_000,
        "claim_interval_ms": 50,
        "retry_delay_ms": 10,
        "max_deliveries": 3,
        "delete_idle_consumer_ms": 0,
    }
    base.update(overrides)
    return WorkerOptions(**base)


@contextlib.asynccontextmanager
async def running(redis, pool, handlers, consumer: str = "c1", **opts: int) -> AsyncIterator[ConsumerWorker]:  # type: ignore[no-untyped-def]
    worker = ConsumerWorker(
        redis=redis, pool=pool, group=GROUP, consumer=consumer, handlers=handlers, options=options(**opts)
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


@contextlib.contextmanager
def worker_process(database_url: str, servers, **env: str) -> Iterator[subprocess.Popen[str]]:  # type: ignore[no-untyped-def]
    """A real consumer process (tests/common/messaging/worker_process.py), ready to consume; killed if still alive."""
    full_env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": servers.redis.url, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.common.messaging.worker_process"], env=full_env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]


async def pending_count(redis) -> int:  # type: ignore[no-untyped-def]
    return (await redis.xpending(STREAM, GROUP))["pending"]


async def test_applies_events_and_acknowledges_them(redis, pool):
    async with running(redis, pool, {"thing": insert_thing}):
        for name in ("a", "b", "c"):
            await publish(redis, name)
        await eventually(lambda: _has(pool, 3), what="three things applied")
        await eventually(lambda: _zero_pending(redis), what="all acknowledged")
    assert await names(pool) == ["a", "b", "c"]


async def test_a_redelivered_event_is_applied_once(redis, pool):
    event_id = str(uuid.uuid4())
    async with running(redis, pool, {"thing": insert_thing}) as worker:
        await publish(redis, "once", event_id)
        await publish(redis, "once", event_id)  # the same event again, as after a crash before ACK
        await publish(redis, "after")
        await eventually(lambda: _has(pool, 2), what="distinct events applied")
        await eventually(lambda: _zero_pending(redis), what="duplicate acknowledged too")
    assert sorted(await names(pool)) == ["after", "once"]
    assert worker.stats.duplicates == 1


async def test_a_failing_handler_leaves_the_entry_pending_and_it_is_redelivered(redis, pool):
    attempts: list[int] = []

    async def flaky(event: Event, conn: asyncpg.Connection) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("transient business failure")
        await insert_thing(event, conn)

    async with running(redis, pool, {"thing": flaky}, retry_delay_ms=300):
        await publish(redis, "flaky")
        await eventually(lambda: _counter_at_least(attempts, 1), what="first attempt")
        assert await pending_count(redis) == 1  # failed: not acknowledged
        assert await names(pool) == []
        await eventually(lambda: _has(pool, 1), what="redelivery applied it")
        await eventually(lambda: _zero_pending(redis), what="acknowledged after success")
    assert len(attempts) == 2


async def test_a_failure_rolls_back_only_its_own_event_in_the_batch(redis, pool):
    async def picky(event: Event, conn: asyncpg.Connection) -> None:
        await insert_thing(event, conn)
        if event.data["name"] == "bad":
            raise ValueError("bad thing")

    async with running(redis, pool, {"thing": picky}, max_deliveries=2):
        for name in ("ok1", "bad", "ok2"):
            await publish(redis, name)
        await eventually(lambda: _dlq_length(redis, 1), what="bad thing dead-lettered")
    assert sorted(await names(pool)) == ["ok1", "ok2"]  # "bad"'s insert was rolled back with it


async def test_an_event_that_keeps_failing_goes_to_the_dead_letter_stream_and_later_ones_flow(redis, pool):
    async def poisoned(event: Event, conn: asyncpg.Connection) -> None:
        if event.data["name"] == "poison":
            raise ValueError("cannot digest poison")
        await insert_thing(event, conn)

    async with running(redis, pool, {"thing": poisoned}, max_deliveries=3):
        poison = await publish(redis, "poison")
        for i in range(5):
            await publish(redis, f"later-{i}")
        await eventually(lambda: _has(pool, 5), what="later events applied")
        await eventually(lambda: _dlq_length(redis, 1), what="poison dead-lettered")
        await eventually(lambda: _zero_pending(redis), what="poison acknowledged after dead-lettering")
    [(_, letter)] = await redis.xrange(DEAD_LETTER_STREAM)
    assert letter["stream"] == STREAM
    assert letter["group"] == GROUP
    assert letter["event_id"] == poison.id
    assert letter["deliveries"] == "3"
    assert "cannot digest poison" in letter["error"]
    assert "poison" in letter["envelope"]


async def test_a_malformed_entry_is_dead_lettered_at_once(redis, pool):
    async with running(redis, pool, {"thing": insert_thing}):
        await redis.xadd(STREAM, {"id": str(uuid.uuid4()), "type": "thing", "data": "{not json"})
        await redis.xadd(STREAM, {"id": "not-a-uuid", "type": "thing", "data": '{"name": "no id"}'})
        await redis.xadd(STREAM, {"id": "{" + str(uuid.uuid4()) + "}", "type": "thing", "data": '{"name": "x"}'})
        await publish(redis, "fine")
        await eventually(lambda: _dlq_length(redis, 3), what="malformed entries dead-lettered")
        await eventually(lambda: _has(pool, 1), what="next event applied")
    errors = [letter["error"] for _, letter in await redis.xrange(DEAD_LETTER_STREAM)]
    assert "data is not JSON" in errors[0] and "is not a UUID" in errors[1] and "is not a UUID" in errors[2]
    assert await names(pool) == ["fine"]


async def test_a_consumer_starts_with_its_own_pending_entries(redis, pool):
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await publish(redis, "left-pending")
    # A previous life of consumer c1 read the entry and died before acknowledging it.
    await redis.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=10)
    assert await pending_count(redis) == 1
    async with running(redis, pool, {"thing": insert_thing}, consumer="c1"):
        await eventually(lambda: _has(pool, 1), what="own pending entry re-read")
        await eventually(lambda: _zero_pending(redis), what="and acknowledged")


async def test_entries_pending_on_a_killed_consumer_are_reclaimed_by_another(redis, pool, database_url, servers):
    with worker_process(database_url, servers, CONSUMER_NAME="doomed", HANG_ON="stuck", BATCH_SIZE="1") as victim:
        await publish(redis, "stuck")
        await eventually(lambda: _pending_on(redis, "doomed", 1), what="victim holding the entry")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    async with running(redis, pool, {"thing": insert_thing}, consumer="rescuer", claim_idle_ms=200) as rescuer:
        await eventually(lambda: _has(pool, 1), what="rescuer applied the reclaimed entry")
        await eventually(lambda: _zero_pending(redis), what="reclaimed entry acknowledged")
    assert rescuer.stats.reclaimed == 1


async def test_sigterm_mid_batch_loses_nothing_and_acks_nothing_unprocessed(redis, pool, database_url, servers):
    total = 60
    published = [await publish(redis, f"n{i}") for i in range(total)]
    with worker_process(database_url, servers, CONSUMER_NAME="graceful", SLOW_MS="20", BATCH_SIZE="10") as process:
        await eventually(lambda: _has(pool, 5), what="some events applied")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    applied = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM things")}
    assert 0 < len(applied) < total, "stopped mid-stream"
    pending = {p["message_id"] for p in await redis.xpending_range(STREAM, GROUP, "-", "+", total)}
    entry_ids = {entry_id: fields["id"] for entry_id, fields in await redis.xrange(STREAM)}
    delivered = await redis.xinfo_groups(STREAM)
    last_delivered = delivered[0]["last-delivered-id"]
    acked = {
        event_id
        for entry_id, event_id in entry_ids.items()
        if entry_id not in pending and _entry_le(entry_id, last_delivered)
    }
    assert acked <= applied, "an entry was acknowledged without its effect"
    # A restart finishes the job: every event applied exactly once.
    async with running(redis, pool, {"thing": insert_thing}, consumer="graceful"):
        await eventually(lambda: _has(pool, total), what="all events applied after restart")
    rows = await pool.fetch("SELECT event_id FROM things")
    assert sorted(r["event_id"] for r in rows) == sorted(e.id for e in published)


async def test_a_lost_consumer_group_is_recreated_loudly(redis, pool):
    with structlog.testing.capture_logs() as logs:
        async with running(redis, pool, {"thing": insert_thing}) as worker:
            await publish(redis, "before")
            await eventually(lambda: _has(pool, 1), what="first event")
            await redis.xgroup_destroy(STREAM, GROUP)  # as after a Redis restart without persistence
            await publish(redis, "after")
            await eventually(lambda: _has(pool, 2), what="event after the group was lost")
    assert worker.stats.groups_recreated >= 1
    assert any(entry["event"] == "worker.consumer_group_lost" and entry["log_level"] == "error" for entry in logs)
    assert sorted(await names(pool)) == ["after", "before"]  # "before" was re-read but not re-applied


async def test_handler_logs_carry_the_event_and_correlation_ids(redis, pool):
    async def chatty(event: Event, conn: asyncpg.Connection) -> None:
        structlog.get_logger("test").info("thing.handled")
        await insert_thing(event, conn)

    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with running(redis, pool, {"thing": chatty}):
            event = await publish(redis, "logged")
            await eventually(lambda: _has(pool, 1), what="handled")
    [line] = [entry for entry in logs if entry["event"] == "thing.handled"]
    assert line["event_id"] == event.id
    assert line["correlation_id"] == "corr-logged"


# -- probes -----------------------------------------------------------------------------------------


async def _has(pool: asyncpg.Pool, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM things") >= n


async def _zero_pending(redis) -> bool:  # type: ignore[no-untyped-def]
    return await pending_count(redis) == 0


async def _dlq_length(redis, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await redis.xlen(DEAD_LETTER_STREAM) >= n


async def _pending_on(redis, consumer: str, n: int) -> bool:  # type: ignore[no-untyped-def]
    with contextlib.suppress(Exception):
        summary = await redis.xpending(STREAM, GROUP)
        return any(c["name"] == consumer and int(c["pending"]) >= n for c in summary["consumers"])
    return False


async def _counter_at_least(items: list[int], n: int) -> bool:
    return len(items) >= n


def _entry_le(a: str, b: str) -> bool:
    return entry_key(a) <= entry_key(b)


async def test_after_commit_callbacks_run_once_the_data_is_visible_and_never_for_a_failed_event(redis, pool):
    seen_from_outside: list[tuple[str, bool]] = []

    async def insert_and_announce(event: Event, conn: asyncpg.Connection) -> None:
        await insert_thing(event, conn)
        name = event.data["name"]

        async def announce() -> None:
            # Another connection, as a woken reader would use: the row must already be committed.
            visible = await pool.fetchval("SELECT count(*) FROM things WHERE name = $1", name) == 1
            seen_from_outside.append((name, visible))

        after_commit(announce)
        if name == "poison":
            raise ValueError("rolled back after registering its callback")

    await publish(redis, "a")
    await publish(redis, "poison")
    await publish(redis, "b")
    async with running(redis, pool, {"thing": insert_and_announce}, max_deliveries=1):
        await eventually(lambda: redis.xlen(DEAD_LETTER_STREAM), what="poison dead-lettered")
        await eventually(lambda: asyncio.sleep(0, len(seen_from_outside) == 2), what="callbacks of a and b")
    assert sorted(seen_from_outside) == [("a", True), ("b", True)]


def test_after_commit_outside_a_handler_is_a_programming_error_unless_collected():
    def callback():  # type: ignore[no-untyped-def]
        return asyncio.sleep(0)

    with pytest.raises(RuntimeError):
        after_commit(callback)
    with collecting_after_commit() as collected:
        after_commit(callback)
    assert collected == [callback]


async def test_an_entry_replayed_for_one_group_is_applied_by_that_group_only(redis, pool, make_database):
    other_applied: list[str] = []
    other_database = await make_database()  # another service: its own database, its own inbox
    await migrate(other_database, [("common", COMMON_MIGRATIONS)])
    other_pool = await create_pool(other_database, 1, 4)

    async def other_group_handler(event: Event, conn: asyncpg.Connection) -> None:
        other_applied.append(event.data["name"])

    other = ConsumerWorker(
        redis=redis,
        pool=other_pool,
        group="other_svc",
        consumer="o1",
        handlers={"thing": other_group_handler},
        options=options(),
    )
    other_task = asyncio.create_task(other.run())
    try:
        async with running(redis, pool, {"thing": insert_thing}):
            replayed = Event(type="thing", data={"name": "replayed"}, producer="test")
            await redis.xadd(STREAM, {**replayed.to_fields(), REPLAY_FOR_FIELD: GROUP})
            await publish(redis, "for everyone")

            async def both_applied() -> bool:
                return len(await names(pool)) == 2

            await eventually(both_applied, what="things applied by their group")
            await eventually(lambda: asyncio.sleep(0, other_applied == ["for everyone"]), what="other group")

            async def other_caught_up() -> bool:
                return (await redis.xpending(STREAM, "other_svc"))["pending"] == 0 and bool(
                    await redis.xinfo_groups(STREAM)
                )

            await eventually(other_caught_up, what="other group acknowledged both")
            assert sorted(await names(pool)) == ["for everyone", "replayed"]
    finally:
        other.stop()
        await asyncio.wait_for(other_task, 10)
        await other_pool.close()
    assert other_applied == ["for everyone"]


async def test_acknowledgements_and_dead_letters_are_recorded_with_their_time_for_tracing(redis, pool):
    async def poisoned(event: Event, conn: asyncpg.Connection) -> None:
        if event.data["name"] == "poison":
            raise ValueError("cannot digest poison")
        await insert_thing(event, conn)

    before_ms = int(time.time() * 1000)
    async with running(redis, pool, {"thing": poisoned}, max_deliveries=1, trace_retention_s=3600):
        good = await publish(redis, "good")
        poison = await publish(redis, "poison")
        not_ours = Event(type="thing", data={"name": "for another group"}, producer="test")
        await redis.xadd(STREAM, {**not_ours.to_fields(), REPLAY_FOR_FIELD: "other_svc"})
        await eventually(lambda: _dlq_length(redis, 1), what="poison dead-lettered")
        await eventually(lambda: _zero_pending(redis), what="everything acknowledged")
    after_ms = int(time.time() * 1000)
    for event in (good, poison):
        record = await redis.hgetall(ack_record_key(event.id))
        assert list(record) == [GROUP]
        assert before_ms <= int(record[GROUP]) <= after_ms
        assert 0 < await redis.ttl(ack_record_key(event.id)) <= 3600
    # Acknowledged without being applied (a replay for another group): no record of processing it.
    assert await redis.exists(ack_record_key(not_ours.id)) == 0


async def test_no_ack_records_when_trace_retention_is_zero(redis, pool):
    async with running(redis, pool, {"thing": insert_thing}, trace_retention_s=0):
        event = await publish(redis, "untraced")
        await eventually(lambda: _has(pool, 1), what="applied")
        await eventually(lambda: _zero_pending(redis), what="acknowledged")
    assert await redis.exists(ack_record_key(event.id)) == 0


async def test_consumers_gone_idle_with_nothing_pending_are_removed_but_never_one_holding_entries(redis, pool):
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await redis.xreadgroup(GROUP, "ghost", {STREAM: ">"}, count=1)  # a replica that left cleanly
    held = await publish(redis, "held by a crashed replica")
    await redis.xreadgroup(GROUP, "crashed", {STREAM: ">"}, count=1)  # took it, never acknowledged

    async def consumers() -> set[str]:
        return {c["name"] for c in await redis.xinfo_consumers(STREAM, GROUP)}

    async with running(redis, pool, {"thing": insert_thing}, delete_idle_consumer_ms=300):

        async def ghost_removed() -> bool:
            return "ghost" not in await consumers()

        await eventually(ghost_removed, what="the idle consumer removed")
        # The crashed one still holds its entry (claim_idle_ms is long here), so it must stay: deleting it
        # would drop the entry from the group's pending list for good.
        assert "crashed" in await consumers()
        pending = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
        assert [(p["consumer"], p["message_id"]) for p in pending] == [("crashed", pending[0]["message_id"])]
        assert (await redis.xrange(STREAM, pending[0]["message_id"], pending[0]["message_id"]))[0][1]["id"] == held.id


async def test_a_failure_in_one_stream_never_holds_back_the_same_entry_id_of_another_stream(redis, pool):
    # The relay often adds to several streams in one millisecond, so `<ms>-0` repeats across streams.
    async def always_fails(event: Event, conn: asyncpg.Connection) -> None:
        raise ValueError("this one is poison")

    poison = Event(type="thing", data={"name": "poison"}, producer="test")
    fine = Event(type="other", data={"name": "fine"}, producer="test")
    await redis.xadd(STREAM, poison.to_fields(), id="1000-0")
    await redis.xadd(stream_for("other"), fine.to_fields(), id="1000-0")
    handlers = {"thing": always_fails, "other": insert_thing}
    async with running(redis, pool, handlers, max_deliveries=2):
        await eventually(lambda: redis.xlen(DEAD_LETTER_STREAM), what="the poison dead-lettered")
        assert await names(pool) == ["fine"]
        assert (await redis.xpending(stream_for("other"), GROUP))["pending"] == 0  # acknowledged at once
    [(_, letter)] = await redis.xrange(DEAD_LETTER_STREAM)
    assert letter["stream"] == STREAM and letter["event_id"] == poison.id


def recording_bulk(calls: list[list[str]], fail_on: str | None = None) -> BulkHandler:
    """A bulk `thing` handler that records each call's names and fails its bulk form on `fail_on`."""

    async def one(event: Event, conn: asyncpg.Connection) -> None:
        calls.append([event.data["name"]])
        if event.data["name"] == fail_on:
            raise ValueError(f"cannot take {fail_on}")
        await insert_thing(event, conn)

    async def many(events, conn: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
        calls.append([e.data["name"] for e in events])
        if any(e.data["name"] == fail_on for e in events):
            raise ValueError(f"cannot take {fail_on}")
        await conn.executemany(
            "INSERT INTO things (event_id, name) VALUES ($1, $2)", [(e.id, e.data["name"]) for e in events]
        )

    return BulkHandler(one=one, many=many)


async def test_a_run_of_same_type_events_goes_to_the_bulk_handler_in_one_call_in_order(redis, pool):
    calls: list[list[str]] = []

    def thing(name: str) -> dict[str, str]:
        return Event(type="thing", data={"name": name}, producer="test").to_fields()

    a = thing("a")
    # Explicit ids: the order across streams is the entry ids' (ids of one millisecond would tie).
    await redis.xadd(STREAM, a, id="1-0")
    await redis.xadd(STREAM, thing("b"), id="2-0")
    await redis.xadd(STREAM, a, id="3-0")  # a duplicate inside the batch is left out
    await redis.xadd(
        stream_for("other"), Event(type="other", data={"name": "x"}, producer="test").to_fields(), id="4-0"
    )
    await redis.xadd(STREAM, thing("c"), id="5-0")  # after the `other` event: a new run
    handlers = {"thing": recording_bulk(calls), "other": insert_thing}
    async with running(redis, pool, handlers, batch_size=10) as worker:
        await eventually(lambda: _has(pool, 4), what="all four applied")
        await eventually(lambda: _zero_pending(redis), what="all acknowledged")
    assert calls == [["a", "b"], ["c"]]
    assert sorted(await names(pool)) == ["a", "b", "c", "x"]
    assert worker.stats.duplicates == 1 and worker.stats.isolated_batches == 0


async def test_when_a_bulk_call_fails_each_event_is_retried_alone_and_only_the_culprit_fails(redis, pool):
    calls: list[list[str]] = []
    for name in ("ok1", "bad", "ok2"):
        await publish(redis, name)
    async with running(redis, pool, {"thing": recording_bulk(calls, fail_on="bad")}, max_deliveries=1) as worker:
        await eventually(lambda: _dlq_length(redis, 1), what="the culprit dead-lettered")
        await eventually(lambda: _zero_pending(redis), what="the others acknowledged")
    assert sorted(await names(pool)) == ["ok1", "ok2"]
    # The bulk form once, then one event at a time until "bad" fails (it runs once), then the rest.
    assert calls[0] == ["ok1", "bad", "ok2"]
    assert calls[1:].count(["bad"]) == 1
    assert worker.stats.isolated_batches == 1
    [(_, letter)] = await redis.xrange(DEAD_LETTER_STREAM)
    assert "cannot take bad" in letter["error"]


async def test_an_event_id_in_capitals_is_applied_once_like_any_other(redis, pool):
    event_id = str(uuid.uuid4()).upper()
    async with running(redis, pool, {"thing": insert_thing}) as worker:
        await publish(redis, "shouting", event_id)
        await publish(redis, "shouting", event_id.lower())  # the same event: a duplicate
        await eventually(lambda: _has(pool, 1), what="the event applied")
        await eventually(lambda: _zero_pending(redis), what="both acknowledged")
    assert await names(pool) == ["shouting"]
    assert worker.stats.applied == 1 and worker.stats.duplicates == 1
