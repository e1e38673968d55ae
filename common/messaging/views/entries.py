"""Entries of a stream as decoded envelopes: a page, the last few matching a filter, or following it live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from common.core.envelope import ENVELOPE_FIELDS
from common.messaging.views.reading import (
    PAGE,
    SCAN_LIMIT,
    bounded_count,
    require_stream,
    xrange_entries,
    xrevrange_entries,
)
from common.redis.ids import entry_time
from common.redis.keys import REPLAY_FOR_FIELD, stream_key


@dataclass(slots=True)
class Entry:
    """One stream entry as a decoded envelope (`data` parsed); `malformed` says why it is not one."""

    stream: str
    id: str
    time: str
    event_id: str
    type: str
    producer: str
    occurred_at: str
    correlation_id: str
    actor_id: str
    data: Any
    replay_for: str | None = None
    malformed: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # fields that are not part of the envelope


def decode_entry(stream: str, entry_id: str, fields: dict[str, str] | None) -> Entry:
    fields = dict(fields or {})
    problems = [name for name in ("id", "type", "data") if not fields.get(name)]
    raw_data = fields.get("data", "")
    data: Any = raw_data
    if raw_data:
        try:
            data = orjson.loads(raw_data)
        except orjson.JSONDecodeError:
            problems.append("data is not JSON")
        else:
            if not isinstance(data, dict):
                problems.append("data is not a JSON object")
    if not fields:
        problems = ["entry has no fields (trimmed?)"]
    return Entry(
        stream=stream,
        id=entry_id,
        time=entry_time(entry_id),
        event_id=fields.get("id", ""),
        type=fields.get("type", ""),
        producer=fields.get("producer", ""),
        occurred_at=fields.get("occurred_at", ""),
        correlation_id=fields.get("correlation_id", ""),
        actor_id=fields.get("actor_id", ""),
        data=data,
        replay_for=fields.get(REPLAY_FOR_FIELD) or None,
        malformed=", ".join(f"lacks {p}" if p in ("id", "type", "data") else p for p in problems) or None,
        extra={k: v for k, v in fields.items() if k not in ENVELOPE_FIELDS and k != REPLAY_FOR_FIELD},
    )


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Keep entries of one event type, actor and/or correlation id (None: any)."""

    type: str | None = None
    actor: str | None = None
    correlation: str | None = None

    def matches(self, entry: Entry) -> bool:
        return (
            (self.type is None or entry.type == self.type)
            and (self.actor is None or entry.actor_id == self.actor)
            and (self.correlation is None or entry.correlation_id == self.correlation)
        )

    @property
    def empty(self) -> bool:
        return self.type is None and self.actor is None and self.correlation is None


@dataclass(slots=True)
class EntryPage:
    stream: str
    items: list[Entry]
    next_from: str | None  # pass as `from` for the next page (same direction); None at the end


async def read_entries(
    redis: aioredis.Redis, name: str, *, start: str | None = None, count: int = 20, reverse: bool = False
) -> EntryPage:
    """`count` entries from id `start` (inclusive; default: the first, or the last when `reverse`)."""
    key = await require_stream(redis, name)
    count = bounded_count(count)
    if reverse:
        raw = await xrevrange_entries(redis, key, start or "+", "-", count + 1)
    else:
        raw = await xrange_entries(redis, key, start or "-", "+", count + 1)
    items = [decode_entry(key, entry_id, fields) for entry_id, fields in raw[:count]]
    return EntryPage(stream=key, items=items, next_from=raw[count][0] if len(raw) > count else None)


async def tail_entries(
    redis: aioredis.Redis, name: str, *, count: int = 10, where: EntryFilter | None = None, upto: str = "+"
) -> list[Entry]:
    """The last `count` entries matching `where` up to id `upto` (inclusive), oldest first; reads back at
    most SCAN_LIMIT entries. A follower passes the id it will follow from, so nothing falls in between."""
    key = await require_stream(redis, name)
    where = where or EntryFilter()
    found: list[Entry] = []
    cursor, read = upto, 0
    while len(found) < count and read < SCAN_LIMIT:
        page = await xrevrange_entries(redis, key, cursor, "-", count - len(found) if where.empty else PAGE)
        if not page:
            break
        read += len(page)
        for entry_id, fields in page:
            entry = decode_entry(key, entry_id, fields)
            if where.matches(entry):
                found.append(entry)
                if len(found) == count:
                    break
        cursor = "(" + page[-1][0]
    found.reverse()
    return found


async def last_entry_id(redis: aioredis.Redis, key: str) -> str:
    """The newest id of a stream, `0-0` when it is empty or does not exist yet."""
    newest = await xrevrange_entries(redis, key, "+", "-", 1)
    return newest[0][0] if newest else "0-0"


async def follow(
    redis: aioredis.Redis,
    name: str,
    *,
    after: str | None = None,
    where: EntryFilter | None = None,
    block_ms: int = 1000,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Entry]:
    """Entries added after id `after` (default: from now on), as they come, until `stop` is set.

    Starting from an explicit id rather than `$` means nothing added between a caller's last read and
    this call is missed. The stream need not exist yet. Setting `stop` ends a blocked read at once
    (the read is abandoned, not awaited: a cancelled blocking read does not always end promptly).
    """
    key = stream_key(name)
    where = where or EntryFilter()
    stop = stop or asyncio.Event()
    cursor = after or await last_entry_id(redis, key)
    while not stop.is_set():
        read = asyncio.ensure_future(redis.xread({key: cursor}, count=PAGE, block=block_ms))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not read.done():
            read.cancel()
            await asyncio.wait({read}, timeout=1)
            if read.done() and not read.cancelled():
                read.exception()  # retrieved: nobody wants it any more
            return
        response: Any = read.result()
        for _stream, entries in response or []:
            for entry_id, fields in entries:
                cursor = entry_id
                entry = decode_entry(key, entry_id, fields)
                if where.matches(entry):
                    yield entry
