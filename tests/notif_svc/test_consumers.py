"""notif_svc's event handlers, through the running worker and called directly, on both stores:
one notification per recipient whatever is redelivered; users replicated; bad notices dead-lettered."""

from __future__ import annotations

import uuid
from typing import Any

from common.core.envelope import DEAD_LETTER_STREAM, Event
from common.http.app import runtime_of
from tests.helpers import eventually, publish
from tests.notif_svc.conftest import AppMaker, World, notice_event


async def _feed_ids(world: World, *actors) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[n["id"] for n in (await world.feed(a))["items"]] for a in actors]


async def test_a_notice_becomes_one_notification_for_each_recipient(world: World):
    actor, first, second, bystander = await world.users(4)
    event = await world.notify(first, second, by=actor)
    [[one], [two], none] = await _feed_ids(world, first, second, bystander)
    assert one != two
    assert none == []
    item = (await world.feed(first))["items"][0]
    assert item["message"] == event.data["message"]
    assert item["actor"] == {"id": actor.id, "username": actor.user["username"]}


async def test_the_same_event_delivered_twice_is_stored_once(world: World):
    actor, first, second = await world.users(3)
    event = notice_event([first, second], by=actor)
    workers = runtime_of(world.app).workers

    def seen() -> tuple[int, int]:
        return sum(w.stats.applied for w in workers), sum(w.stats.duplicates for w in workers)

    applied_before, duplicates_before = seen()
    await publish(world.redis, event, event)  # the relay re-published it (crash before it marked it sent)

    async def both_seen() -> bool:
        return sum(seen()) >= applied_before + duplicates_before + 2

    await eventually(both_seen, what="both deliveries processed")
    assert seen()[1] >= duplicates_before + 1
    assert [len(ids) for ids in await _feed_ids(world, first, second)] == [1, 1]


async def test_the_handler_applied_twice_directly_stores_once(world: World):
    """Without the inbox in between: the store's own (event, recipient) key makes it idempotent."""
    actor, first, second = await world.users(3)
    event = notice_event([first, second], by=actor)
    announced = []
    for _ in range(2):
        async with world.pool.acquire() as conn, conn.transaction():
            announced.append(await world.service.store_notice(event, conn))
    assert [len(ids) for ids in await _feed_ids(world, first, second)] == [1, 1]
    # The repeat announces the notifications already stored, not new ones.
    assert sorted(m["data"]["id"] for _, m in announced[0]) == sorted(m["data"]["id"] for _, m in announced[1])
    assert (await world.service.feed_state(first.id)).version >= 1


async def test_the_actor_shows_under_their_current_username(world: World):
    actor, reader = await world.users(2)
    renamed = {**actor.user, "username": actor.user["username"] + "_new", "version": 2}
    await world.notify(reader, by=actor)
    await world.apply([Event.new("updateUser", renamed, producer="auth_svc", actor_id=actor.id)])
    [item] = (await world.feed(reader))["items"]
    assert item["actor"] == {"id": actor.id, "username": renamed["username"]}


async def test_an_actor_unknown_to_the_replica_keeps_the_events_username(world: World):
    [reader] = await world.users(1)
    stranger = world.actor()  # their newUser has not arrived yet
    await world.notify(reader, by=stranger)
    [item] = (await world.feed(reader))["items"]
    assert item["actor"] == {"id": stranger.id, "username": stranger.user["username"]}


async def test_system_notices_have_no_actor_id(world: World):
    [assignee] = await world.users(1)
    await world.notify(assignee, kind="card_due_soon")
    [item] = (await world.feed(assignee))["items"]
    assert item["type"] == "card_due_soon"
    assert item["actor"] == {"id": None, "username": "taskswarm"}


async def test_a_malformed_notice_is_dead_lettered_and_the_next_one_still_arrives(make_world: AppMaker):
    world = await make_world(consumer_max_deliveries=2)
    [reader] = await world.users(1)
    bad = Event.new(
        "newNotif",
        {"type": "card_created", "recipients": ["not-a-uuid"], "actor": {"id": None}, "message": "x"},
        producer="project_svc",
    )
    await publish(world.redis, bad)
    good = await world.notify(reader)

    async def dead_lettered() -> Any:
        return await world.redis.xrange(DEAD_LETTER_STREAM)

    [(_, entry)] = await eventually(dead_lettered, what="the bad notice in the dead-letter stream")
    assert entry["event_id"] == bad.id
    assert "not a UUID" in entry["error"]
    [item] = (await world.feed(reader))["items"]
    assert item["message"] == good.data["message"]


async def test_users_are_replicated_version_guarded(pg_world: World):
    [actor] = await pg_world.users(1)
    older = {**actor.user, "username": "stale", "version": 0}
    await pg_world.apply([Event.new("updateUser", older, producer="auth_svc", actor_id=actor.id)])
    row = await pg_world.pool.fetchrow("SELECT username, version FROM users WHERE id = $1", actor.id)
    assert dict(row) == {"username": actor.user["username"], "version": 1}
    assert uuid.UUID(actor.id)
