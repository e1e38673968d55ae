"""Finding events by id or correlation id across every stream, and where each stands in every group:
acknowledged (and when, from the worker's ack records), pending, dead-lettered or not delivered yet."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from common.core.envelope import DEAD_LETTER_STREAM
from common.messaging.views.dead_letters import DeadLetter, decode_dead_letter
from common.messaging.views.entries import Entry, decode_entry
from common.messaging.views.reading import (
    DLQ_SCAN_LIMIT,
    MAX_COUNT,
    SCAN_LIMIT,
    bounded_count,
    group_infos,
    stream_keys,
    walk,
)
from common.redis.ids import entry_key, entry_ms, ms_to_time
from common.redis.keys import ack_record_key


@dataclass(slots=True)
class GroupState:
    """Where one entry stands in one consumer group of its stream."""

    group: str
    state: str  # acknowledged | pending | dead_lettered | not_delivered
    skipped: bool  # a dead letter replayed for another group: acknowledged without being applied
    consumer: str | None = None  # pending: who holds it
    idle_ms: int | None = None
    deliveries: int | None = None
    acked_at: str | None = None  # when the group last acknowledged this event (worker's record)
    ack_delay_ms: int | None = None  # acked_at minus the entry's time
    dead_letter_id: str | None = None


@dataclass(slots=True)
class EventHit:
    entry: Entry
    groups: list[GroupState]


@dataclass(slots=True)
class EventSearch:
    event_id: str | None
    correlation_id: str | None
    items: list[EventHit]  # in entry-time order, across streams
    dead_letters: list[DeadLetter]
    truncated: bool  # `limit` hits reached, or a stream was only partly read


async def find_events(
    redis: aioredis.Redis,
    *,
    event_id: str | None = None,
    correlation_id: str | None = None,
    limit: int = 100,
    scan_limit: int = SCAN_LIMIT,
) -> EventSearch:
    """Entries whose event id is `event_id` or whose correlation id is `correlation_id`, in every stream,
    with each consumer group's state for each, and the dead letters of those events."""
    if not event_id and not correlation_id:
        raise ValueError("give an event id or a correlation id")
    limit = bounded_count(limit)

    def wanted(fields: dict[str, str]) -> bool:
        return bool(
            (event_id and fields.get("id") == event_id)
            or (correlation_id and fields.get("correlation_id") == correlation_id)
        )

    hits: list[Entry] = []
    truncated = False
    for key in await stream_keys(redis):
        read = 0
        async for entry_id, fields in walk(redis, key, scan_limit):
            read += 1
            if wanted(fields):
                hits.append(decode_entry(key, entry_id, fields))
        truncated = truncated or read >= scan_limit
    hits.sort(key=lambda e: (entry_key(e.id), e.stream))
    if len(hits) > limit:
        hits, truncated = hits[:limit], True

    event_ids = {hit.event_id for hit in hits if hit.event_id}
    if event_id:
        event_ids.add(event_id)
    letters = []
    async for letter_id, fields in walk(redis, DEAD_LETTER_STREAM, DLQ_SCAN_LIMIT):
        letter = decode_dead_letter(letter_id, fields)
        if letter.event_id in event_ids or (correlation_id and letter.correlation_id == correlation_id):
            letters.append(letter)
    states = await _group_states(redis, hits, letters)
    return EventSearch(
        event_id=event_id,
        correlation_id=correlation_id,
        items=[EventHit(entry=hit, groups=state) for hit, state in zip(hits, states, strict=True)],
        dead_letters=letters,
        truncated=truncated,
    )


async def _group_states(redis: aioredis.Redis, hits: list[Entry], letters: list[DeadLetter]) -> list[list[GroupState]]:
    groups_of = {}
    for key in {hit.stream for hit in hits}:
        groups_of[key] = sorted(await group_infos(redis, key), key=lambda g: g["name"])
    dead = {(letter.stream, letter.entry_id, letter.group): letter.id for letter in letters}
    event_ids = sorted({hit.event_id for hit in hits if hit.event_id})
    async with redis.pipeline(transaction=False) as pipe:
        for known in event_ids:
            pipe.hgetall(ack_record_key(known))
        for hit in hits:
            for group in groups_of[hit.stream]:
                pipe.xpending_range(hit.stream, group["name"], min=hit.id, max=hit.id, count=1)
        answers = iter(await pipe.execute())
    ack_times = {known: next(answers) for known in event_ids}
    states = [
        [_state_of(hit, group, next(answers), ack_times.get(hit.event_id, {}), dead) for group in groups_of[hit.stream]]
        for hit in hits
    ]
    _ack_time_on_latest_entry(hits, states)
    return states


def _ack_time_on_latest_entry(hits: list[Entry], states: list[list[GroupState]]) -> None:
    """The worker records one time per event and group, its latest acknowledgement. When an event sits in
    the streams more than once (a replayed dead letter), that time belongs to the latest of its entries
    added before it; the earlier entries' times are unknown (None), not the later one's."""
    latest: dict[tuple[str, str], tuple[tuple[int, int], GroupState]] = {}
    for hit, per_group in zip(hits, states, strict=True):
        for state in per_group:
            if state.ack_delay_ms is None:
                continue
            if state.ack_delay_ms < 0:  # recorded before this entry existed: it is another entry's time
                state.acked_at = state.ack_delay_ms = None
                continue
            key, position = (hit.event_id, state.group), entry_key(hit.id)
            current = latest.get(key)
            if current is not None and current[0] > position:
                state.acked_at = state.ack_delay_ms = None
                continue
            if current is not None:
                current[1].acked_at = current[1].ack_delay_ms = None
            latest[key] = (position, state)


def _state_of(
    hit: Entry, group: dict[str, Any], held: Any, ack_times: dict[str, str], dead: dict[tuple[str, str, str], str]
) -> GroupState:
    name = group["name"]
    skipped = bool(hit.replay_for and hit.replay_for != name)
    if held:
        item = held[0]
        return GroupState(
            group=name,
            state="pending",
            skipped=skipped,
            consumer=item["consumer"],
            idle_ms=int(item["time_since_delivered"]),
            deliveries=int(item["times_delivered"]),
        )
    acked_ms = None
    with contextlib.suppress(ValueError):
        acked_ms = int(ack_times[name]) if name in ack_times else None
    acked_at = ms_to_time(acked_ms) if acked_ms is not None else None
    delay = acked_ms - entry_ms(hit.id) if acked_ms is not None else None
    letter_id = dead.get((hit.stream, hit.id, name))
    if letter_id is not None:
        return GroupState(
            group=name,
            state="dead_lettered",
            skipped=skipped,
            acked_at=acked_at,
            ack_delay_ms=delay,
            dead_letter_id=letter_id,
        )
    if entry_key(hit.id) <= entry_key(group.get("last-delivered-id") or "0-0"):
        return GroupState(group=name, state="acknowledged", skipped=skipped, acked_at=acked_at, ack_delay_ms=delay)
    return GroupState(group=name, state="not_delivered", skipped=skipped)


async def trace_request(redis: aioredis.Redis, request_id: str, *, limit: int = MAX_COUNT) -> EventSearch:
    """Every event a request caused (its X-Request-ID is their correlation id), in order, across streams."""
    return await find_events(redis, correlation_id=request_id, limit=limit)
