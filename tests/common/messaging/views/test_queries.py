"""common.messaging.views against a real Redis: the numbers and states each view computes from what Redis keeps."""

from __future__ import annotations

import asyncio

import pytest

from common.core.envelope import Event
from common.core.errors import Conflict, NotFound
from common.messaging import views as streams
from common.messaging.views import EntryFilter, groups


async def publish(redis, event_type: str, name: str, *, actor: str = "", correlation: str = "") -> tuple[str, Event]:  # type: ignore[no-untyped-def]
    event = Event(type=event_type, data={"name": name}, producer="test", actor_id=actor, correlation_id=correlation)
    entry_id = await redis.xadd(event.stream, event.to_fields())
    return entry_id, event


async def test_lag_is_counted_where_redis_cannot_report_it(redis, monkeypatch):
    ids = [(await publish(redis, "newThing", f"n{i}"))[0] for i in range(5)]
    await redis.xgroup_create("events:newThing", "g", id="0")
    await redis.xreadgroup("g", "c1", {"events:newThing": ">"}, count=1)
    [group] = (await streams.show_stream(redis, "newThing")).groups
    assert (group.lag, group.lag_source) == (4, "redis")

    await redis.xdel("events:newThing", ids[2])  # after a deletion Redis reports no lag at all
    assert (await redis.xinfo_groups("events:newThing"))[0]["lag"] is None
    [group] = (await streams.show_stream(redis, "newThing")).groups
    assert (group.lag, group.lag_source) == (3, "counted")
    assert (await streams.list_streams(redis)).items[0].lag == 3

    monkeypatch.setattr(groups, "LAG_COUNT_LIMIT", 2)
    [group] = (await streams.show_stream(redis, "newThing")).groups
    assert (group.lag, group.lag_source) == (2, "counted_at_least")


async def test_entries_page_forwards_and_backwards_without_gaps(redis):
    ids = [(await publish(redis, "newThing", f"n{i}"))[0] for i in range(7)]
    seen, start = [], None
    while True:
        page = await streams.read_entries(redis, "events:newThing", start=start, count=3)
        seen += [entry.id for entry in page.items]
        if page.next_from is None:
            break
        start = page.next_from
    assert seen == ids
    backwards = await streams.read_entries(redis, "newThing", count=3, reverse=True)
    assert [entry.id for entry in backwards.items] == ids[:-4:-1]
    assert backwards.next_from == ids[3]
    assert backwards.items[0].data == {"name": "n6"}
    assert backwards.items[0].time == streams.entry_time(ids[6])


async def test_tail_returns_the_last_matching_entries_oldest_first(redis):
    for i in range(6):
        await publish(redis, "newThing", f"n{i}", actor="ann" if i % 2 else "bob", correlation=f"r{i // 3}")
    tail = await streams.tail_entries(redis, "newThing", count=2, where=EntryFilter(actor="ann"))
    assert [entry.data["name"] for entry in tail] == ["n3", "n5"]
    tail = await streams.tail_entries(redis, "newThing", count=5, where=EntryFilter(actor="bob", correlation="r0"))
    assert [entry.data["name"] for entry in tail] == ["n0", "n2"]
    assert [e.data["name"] for e in await streams.tail_entries(redis, "newThing", count=2)] == ["n4", "n5"]


async def test_each_group_state_of_an_event_is_what_redis_and_the_ack_records_say(redis):
    card_entry, card = await publish(redis, "newCard", "card", correlation="req-1")
    _, other = await publish(redis, "newCard", "unrelated", correlation="req-2")
    notice_entry, notice = await publish(redis, "newNotif", "notice", correlation="req-1")
    await redis.xgroup_create("events:newCard", "acking_svc", id="0")
    await redis.xgroup_create("events:newCard", "holding_svc", id="0")
    await redis.xgroup_create("events:newCard", "late_svc", id="$")
    await redis.xgroup_create("events:newNotif", "slow_svc", id="0")
    await redis.xreadgroup("acking_svc", "a1", {"events:newCard": ">"}, count=1)
    await redis.xack("events:newCard", "acking_svc", card_entry)
    await redis.hset(f"trace:acked:{card.id}", "acking_svc", str(streams.entry_ms(card_entry) + 7))
    await redis.xreadgroup("holding_svc", "h1", {"events:newCard": ">"}, count=1)
    await redis.xreadgroup("holding_svc", "h1", {"events:newCard": "0"})  # a redelivery: 2 deliveries

    found = await streams.find_events(redis, correlation_id="req-1")
    hits = [(hit.entry.id, hit.entry.event_id) for hit in found.items]
    assert hits == [(card_entry, card.id), (notice_entry, notice.id)]  # across streams, in entry-time order
    states = {state.group: state for state in found.items[0].groups}
    assert (states["acking_svc"].state, states["acking_svc"].ack_delay_ms) == ("acknowledged", 7)
    assert states["acking_svc"].acked_at == streams.ms_to_time(streams.entry_ms(card_entry) + 7)
    held = states["holding_svc"]
    assert (held.state, held.consumer, held.deliveries) == ("pending", "h1", 2)
    assert states["late_svc"].state == "acknowledged"  # created after it: as good as delivered, never acked
    assert states["late_svc"].acked_at is None
    assert [(s.group, s.state) for s in found.items[1].groups] == [("slow_svc", "not_delivered")]

    by_id = await streams.find_events(redis, event_id=other.id)
    assert [hit.entry.data for hit in by_id.items] == [{"name": "unrelated"}]
    pending = await streams.pending_entries(redis, "newCard", "holding_svc")
    assert [(p.id, p.consumer, p.deliveries, p.event_id) for p in pending.items] == [(card_entry, "h1", 2, card.id)]


async def test_unknown_streams_groups_and_dead_letters_are_not_found(redis):
    await publish(redis, "newThing", "n")
    await redis.set("events:notAStream", "x")
    for call in (
        streams.show_stream(redis, "nothing"),
        streams.show_stream(redis, "notAStream"),
        streams.read_entries(redis, "nothing"),
        streams.pending_entries(redis, "newThing", "nobody"),
        streams.get_dead_letter(redis, "1-0"),
        streams.replay_dead_letter(redis, "garbage"),
        streams.drop_dead_letter(redis, "1-0"),
    ):
        with pytest.raises(NotFound):
            await call
    assert [item.stream for item in (await streams.list_streams(redis)).items] == ["events:newThing"]


async def test_two_concurrent_replays_of_one_dead_letter_put_it_back_once(redis):
    _, event = await publish(redis, "newThing", "poison")
    letter_id = await redis.xadd(
        "events:dlq",
        {
            "stream": "events:newThing",
            "entry_id": "1-0",
            "group": "fragile_svc",
            "event_id": event.id,
            "envelope": streams.dumps(event.to_fields()),
        },
    )
    await redis.xadd("events:dlq", {"stream": "events:newThing", "group": "g", "envelope": "{}"})  # nothing to replay
    replays = [streams.replay_dead_letter(redis, letter_id) for _ in range(2)]
    results = await asyncio.gather(*replays, return_exceptions=True)
    assert sorted(type(result).__name__ for result in results) == ["NotFound", "ReplayResult"]
    entries = await redis.xrange("events:newThing")
    assert len(entries) == 2
    assert entries[1][1] == {**event.to_fields(), "replay_for": "fragile_svc"}
    [empty] = (await streams.list_dead_letters(redis)).items
    with pytest.raises(Conflict):
        await streams.replay_dead_letter(redis, empty.id)
