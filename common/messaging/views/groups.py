"""Streams and their consumer groups: length, first and last entries, each group's lag and pending
entries, each consumer's share and idle time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from common.core.envelope import DEAD_LETTER_STREAM
from common.messaging.views.dead_letters import dead_letter_counts
from common.messaging.views.reading import PAGE, group_infos, require_stream, stream_keys, xrange_entries
from common.redis.ids import EntryRef, entry_ref
from common.redis.keys import stream_type

# A lag Redis cannot report is counted entry by entry, up to this many (then reported as "at least").
LAG_COUNT_LIMIT = 10_000


@dataclass(slots=True)
class StreamSummary:
    stream: str
    type: str
    length: int
    first_entry: EntryRef | None
    last_entry: EntryRef | None
    groups: list[str]
    lag: int  # entries not yet delivered, summed over the groups
    pending: int  # delivered but not acknowledged, summed over the groups
    dead_letters: int  # entries of this stream now in events:dlq


@dataclass(slots=True)
class StreamsOverview:
    items: list[StreamSummary]
    dead_letters: int  # length of events:dlq


@dataclass(slots=True)
class ConsumerInfo:
    name: str
    pending: int
    idle_ms: int  # since its last read or claim
    inactive_ms: int | None  # since its last successful read (Redis ≥ 7.2 only)


@dataclass(slots=True)
class GroupInfo:
    name: str
    pending: int
    lag: int
    lag_source: str  # "redis" (XINFO), "counted", or "counted_at_least" (count stopped at LAG_COUNT_LIMIT)
    last_delivered: EntryRef | None
    entries_read: int | None
    consumers: list[ConsumerInfo]


@dataclass(slots=True)
class StreamDetail:
    stream: str
    type: str
    length: int
    first_entry: EntryRef | None
    last_entry: EntryRef | None
    entries_added: int | None
    dead_letters: int
    groups: list[GroupInfo]


async def _count_after(redis: aioredis.Redis, key: str, after: str, limit: int) -> tuple[int, bool]:
    """How many entries come after id `after` (exclusive), up to `limit`; and whether that is all."""
    counted, cursor = 0, after
    while counted < limit:
        wanted = min(PAGE, limit - counted)
        page = await xrange_entries(redis, key, "(" + cursor, "+", wanted)
        counted += len(page)
        if len(page) < wanted:
            return counted, True
        cursor = page[-1][0]
    return counted, not await xrange_entries(redis, key, "(" + cursor, "+", 1)


async def group_lag(redis: aioredis.Redis, key: str, group: dict[str, Any]) -> tuple[int, str]:
    """A group's lag: as Redis (≥ 7) reports it, else counted (Redis cannot tell after deletions)."""
    lag = group.get("lag")
    if lag is not None:
        return int(lag), "redis"
    counted, complete = await _count_after(redis, key, group.get("last-delivered-id") or "0-0", LAG_COUNT_LIMIT)
    return counted, "counted" if complete else "counted_at_least"


async def list_streams(redis: aioredis.Redis) -> StreamsOverview:
    keys = await stream_keys(redis)
    dead = await dead_letter_counts(redis)
    items = []
    for key in keys:
        info = await redis.xinfo_stream(key)
        groups = await group_infos(redis, key)
        lags = [(await group_lag(redis, key, group))[0] for group in groups]
        items.append(
            StreamSummary(
                stream=key,
                type=stream_type(key),
                length=int(info["length"]),
                first_entry=entry_ref(_first_id(info.get("first-entry"))),
                last_entry=entry_ref(_first_id(info.get("last-entry"))),
                groups=sorted(group["name"] for group in groups),
                lag=sum(lags),
                pending=sum(int(group["pending"]) for group in groups),
                dead_letters=dead.get(key, 0),
            )
        )
    return StreamsOverview(items=items, dead_letters=await redis.xlen(DEAD_LETTER_STREAM))


def _first_id(entry: Any) -> str | None:
    return entry[0] if entry else None


async def show_stream(redis: aioredis.Redis, name: str) -> StreamDetail:
    key = await require_stream(redis, name)
    info = await redis.xinfo_stream(key)
    dead = await dead_letter_counts(redis)
    groups = []
    for group in sorted(await group_infos(redis, key), key=lambda g: g["name"]):
        lag, source = await group_lag(redis, key, group)
        consumers = [
            ConsumerInfo(
                name=consumer["name"],
                pending=int(consumer["pending"]),
                idle_ms=int(consumer["idle"]),
                inactive_ms=int(consumer["inactive"]) if consumer.get("inactive") is not None else None,
            )
            for consumer in await redis.xinfo_consumers(key, group["name"])
        ]
        entries_read = group.get("entries-read")
        groups.append(
            GroupInfo(
                name=group["name"],
                pending=int(group["pending"]),
                lag=lag,
                lag_source=source,
                last_delivered=entry_ref(group.get("last-delivered-id")),
                entries_read=int(entries_read) if entries_read is not None else None,
                consumers=sorted(consumers, key=lambda c: c.name),
            )
        )
    entries_added = info.get("entries-added")
    return StreamDetail(
        stream=key,
        type=stream_type(key),
        length=int(info["length"]),
        first_entry=entry_ref(_first_id(info.get("first-entry"))),
        last_entry=entry_ref(_first_id(info.get("last-entry"))),
        entries_added=int(entries_added) if entries_added is not None else None,
        dead_letters=dead.get(key, 0),
        groups=groups,
    )
