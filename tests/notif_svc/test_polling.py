"""The polling contract: validators on every feed answer, cheap 304s, and long-polls that are woken
across processes (through Redis) or give up with 304 after `wait` seconds."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import ClientResponse

from common.http.app import runtime_of
from notif_svc import live
from notif_svc.service import RECHECK_INTERVAL_S
from notif_svc.websocket import LIVE_HUB
from tests.helpers import eventually
from tests.notif_svc.conftest import Actor, AppMaker, FeedQueryCounter, World, notice_event


async def _get(
    world: World, actor: Actor, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> ClientResponse:
    return await world.client.get("/notifications", params=params or {}, headers={**actor.headers, **(headers or {})})


def _ims(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


async def test_feed_answers_carry_etag_last_modified_poll_interval_and_cache_control(make_world: AppMaker):
    world = await make_world(notif_poll_interval_s=7)
    [reader] = await world.users(1)
    response = await _get(world, reader)
    assert response.headers["X-Poll-Interval"] == "7"
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == datetime(1970, 1, 1, tzinfo=UTC)
    empty_etag = response.headers["ETag"]
    assert empty_etag.startswith('"') and not empty_etag.startswith("W/")  # strong

    await world.notify(reader)
    response = await _get(world, reader)
    assert response.headers["ETag"] != empty_etag
    state = await world.service.feed_state(reader.id)
    assert state.modified_at is not None
    # Whole seconds, rounded up: the date a client echoes back is never older than what it saw.
    last_modified = parsedate_to_datetime(response.headers["Last-Modified"])
    assert timedelta(0) <= last_modified - state.modified_at < timedelta(seconds=1)
    assert response.headers["X-Poll-Interval"] == "7"


async def test_the_etag_differs_between_queries_of_the_same_feed(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    etags = {
        (await _get(pg_world, reader, params)).headers["ETag"]
        for params in ({}, {"unread": "true"}, {"limit": 5}, {"limit": 5, "unread": "true"})
    }
    assert len(etags) == 4
    # `wait` does not change the representation, so it keeps the ETag.
    assert (await _get(pg_world, reader, {"wait": 0})).headers["ETag"] in etags


async def test_a_matching_if_none_match_is_304_without_a_body_until_the_feed_changes(world: World):
    [reader] = await world.users(1)
    await world.notify(reader)
    first = await _get(world, reader)
    etag = first.headers["ETag"]
    response = await _get(world, reader, headers={"If-None-Match": etag})
    assert response.status == 304
    assert await response.read() == b""
    assert response.headers["ETag"] == etag
    assert response.headers["X-Poll-Interval"] == "30"
    assert "Last-Modified" in response.headers
    assert (await _get(world, reader, {"unread": "true"}, headers={"If-None-Match": etag})).status == 200
    assert (await _get(world, reader, headers={"If-None-Match": f'"x", {etag}'})).status == 304

    await world.notify(reader)
    response = await _get(world, reader, headers={"If-None-Match": etag})
    assert response.status == 200
    assert len((await response.json())["items"]) == 2
    assert response.headers["ETag"] != etag


async def test_marking_read_changes_the_etag(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    first = await _get(pg_world, reader)
    [item] = (await first.json())["items"]
    await pg_world.client.post(f"/notifications/{item['id']}/read", headers=reader.headers)
    response = await _get(pg_world, reader, headers={"If-None-Match": first.headers["ETag"]})
    assert response.status == 200
    assert (await response.json())["items"][0]["read"] is True


async def test_if_modified_since_is_304_unless_the_feed_changed_after_it(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    last_modified = (await _get(pg_world, reader)).headers["Last-Modified"]
    assert (await _get(pg_world, reader, headers={"If-Modified-Since": last_modified})).status == 304
    later = _ims(datetime.now(UTC) + timedelta(hours=1))
    assert (await _get(pg_world, reader, headers={"If-Modified-Since": later})).status == 304
    earlier = _ims(parsedate_to_datetime(last_modified) - timedelta(seconds=1))
    assert (await _get(pg_world, reader, headers={"If-Modified-Since": earlier})).status == 200
    # If-None-Match decides when both are sent (RFC 9110): a stale ETag wins over a fresh date.
    stale = await _get(pg_world, reader, headers={"If-None-Match": '"0-stale"', "If-Modified-Since": later})
    assert stale.status == 200
    assert (await _get(pg_world, reader, headers={"If-Modified-Since": "not a date"})).status == 200


async def test_the_304_path_runs_no_feed_query(make_world: AppMaker):
    counter = FeedQueryCounter()
    world = await make_world(store_factory=counter.factory())
    [reader] = await world.users(1)
    await world.notify(reader)
    first = await _get(world, reader)
    assert counter.feed_queries == 1
    for headers in (
        {"If-None-Match": first.headers["ETag"]},
        {"If-Modified-Since": first.headers["Last-Modified"]},
        {"If-None-Match": first.headers["ETag"], "If-Modified-Since": first.headers["Last-Modified"]},
    ):
        assert (await _get(world, reader, headers=headers)).status == 304
    assert counter.feed_queries == 1


async def test_repeated_304_polls_are_answered_from_memory_without_reading_the_feed_state(make_world: AppMaker):
    counter = FeedQueryCounter()
    world = await make_world(store_factory=counter.factory())
    [reader] = await world.users(1)
    await world.notify(reader)
    etag = (await _get(world, reader)).headers["ETag"]
    reads = counter.state_reads
    for _ in range(5):
        assert (await _get(world, reader, headers={"If-None-Match": etag})).status == 304
    assert counter.state_reads == reads


async def test_a_change_announced_by_another_replica_ends_the_304s_at_once(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    first = await _get(pg_world, reader)
    [item] = (await first.json())["items"]
    assert (await _get(pg_world, reader, headers={"If-None-Match": first.headers["ETag"]})).status == 304
    # Another replica marks it read: the change is in the shared store, the announcement on Redis.
    await pg_world.service.store.mark_read(reader.id, item["id"], datetime.now(UTC))
    await live.publish(pg_world.redis, [(reader.id, {"type": "read"})])
    feed_states = pg_world.app[LIVE_HUB].feed_states

    async def heard() -> bool:
        return feed_states.get(reader.id) is None

    await eventually(heard, what="the announcement heard")
    assert (await _get(pg_world, reader, headers={"If-None-Match": first.headers["ETag"]})).status == 200


async def test_a_change_nobody_announced_ends_the_304s_within_the_recheck_interval(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    first = await _get(pg_world, reader)
    [item] = (await first.json())["items"]
    await pg_world.service.store.mark_read(reader.id, item["id"], datetime.now(UTC))  # no announcement
    started = time.monotonic()

    async def modified() -> bool:
        return (await _get(pg_world, reader, headers={"If-None-Match": first.headers["ETag"]})).status == 200

    await eventually(modified, timeout=RECHECK_INTERVAL_S + 3, what="the change seen without its announcement")
    assert time.monotonic() - started < RECHECK_INTERVAL_S + 1


async def _hold(world: World, reader: Actor, etag: str, wait: int = 5) -> asyncio.Task[ClientResponse]:
    """Start a long-poll and return once the app is holding it."""
    task = asyncio.create_task(_get(world, reader, {"wait": wait}, headers={"If-None-Match": etag}))
    await world.listeners(1)
    return task


async def test_a_held_poll_answers_within_a_second_of_a_new_notification(world: World):
    actor, reader = await world.users(2)
    etag = (await _get(world, reader)).headers["ETag"]
    held = await _hold(world, reader, etag)
    started = time.monotonic()
    event = notice_event([reader], by=actor)
    await world.apply([event])
    response = await asyncio.wait_for(held, 1.0)
    assert time.monotonic() - started < 1.0
    assert response.status == 200
    assert [n["message"] for n in (await response.json())["items"]] == [event.data["message"]]
    assert response.headers["ETag"] != etag


async def test_a_held_poll_is_woken_by_a_notification_stored_by_another_instance(make_world: AppMaker):
    polled = await make_world(consumer_name="notif-a")
    storing = await make_world(consumer_name="notif-b")
    workers = runtime_of(polled.app).workers
    for worker in workers:
        worker.stop()  # from here on only the other instance consumes newNotif

    async def stopped() -> bool:
        return not any(worker.running for worker in workers)

    await eventually(stopped, what="the polled instance's worker stopped")
    actor, reader = await storing.users(2)
    etag = (await _get(polled, reader)).headers["ETag"]
    held = await _hold(polled, reader, etag)
    started = time.monotonic()
    event = notice_event([reader], by=actor)
    await storing.apply([event])
    response = await asyncio.wait_for(held, 1.0)
    assert time.monotonic() - started < 1.0
    assert response.status == 200
    assert [n["message"] for n in (await response.json())["items"]] == [event.data["message"]]


async def test_a_held_poll_with_no_news_answers_304_after_wait_seconds(pg_world: World):
    [reader] = await pg_world.users(1)
    first = await _get(pg_world, reader)
    started = time.monotonic()
    response = await _get(pg_world, reader, {"wait": 1}, headers={"If-None-Match": first.headers["ETag"]})
    elapsed = time.monotonic() - started
    assert response.status == 304
    assert 0.9 <= elapsed < 2.0
    assert response.headers["ETag"] == first.headers["ETag"]


async def test_wait_without_a_matching_validator_answers_at_once(pg_world: World):
    [reader] = await pg_world.users(1)
    started = time.monotonic()
    response = await _get(pg_world, reader, {"wait": 5}, headers={"If-None-Match": '"0-not-this-one"'})
    assert response.status == 200
    assert time.monotonic() - started < 1.0


async def test_marking_read_elsewhere_wakes_a_held_poll(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    first = await _get(pg_world, reader)
    [item] = (await first.json())["items"]
    held = await _hold(pg_world, reader, first.headers["ETag"])
    started = time.monotonic()
    await pg_world.client.post(f"/notifications/{item['id']}/read", headers=reader.headers)
    response = await asyncio.wait_for(held, 1.0)
    assert time.monotonic() - started < 1.0
    assert (await response.json())["items"][0]["read"] is True


async def test_a_lost_wake_up_is_made_up_for_by_the_periodic_recheck(pg_world: World):
    [reader] = await pg_world.users(1)
    await pg_world.notify(reader)
    first = await _get(pg_world, reader)
    [item] = (await first.json())["items"]
    held = await _hold(pg_world, reader, first.headers["ETag"], wait=10)
    # Change the feed behind the hub's back: no message is published.
    await pg_world.service.store.mark_read(reader.id, item["id"], datetime.now(UTC))
    response = await asyncio.wait_for(held, 3.0)
    assert response.status == 200
    assert (await response.json())["items"][0]["read"] is True
