"""Stream inspection: what the event streams, their consumer groups and the dead-letter stream hold.

A mechanism, like the worker it looks into: it knows the envelope (`common.events`), consumer groups,
`events:dlq` and the worker's ack records (`trace:acked:<event id>`), nothing of any service's business.
Every function takes a redis.asyncio client made with `decode_responses=True` (`common.runtime.make_redis`)
and returns dataclasses that orjson serialises as they are (`dumps`, `common.web.json_response`). The
gateway's admin API (`gateway/admin.py`) and `swarm streams|dlq|trace` (`common/streams_cli.py`) both
call these functions, so a view never differs between the two.

Stream names are accepted with or without the `events:` prefix. Entry ids come with their time (the
milliseconds part of the id, as RFC 3339). What "consumed" means for one entry and one group, from what
Redis keeps: delivered when the id is at or below the group's last-delivered id; still held when it is
in the group's pending list (PEL); acknowledged when delivered and no longer pending. Redis keeps no ack
times, so the worker records them (`common.worker`, `ack_record_key`).

The lookups that scan (`find_events`, the dead-letter counts) read whole streams page by page: fine for
debugging, bounded by `limit` / `scan_limit`, never for a request path of the product.

Removing entries (trimming below what every group has acknowledged, archiving them first) is
`common/retention.py`, on top of these names and decoded entries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from common.errors import Conflict, NotFound
from common.events import DEAD_LETTER_STREAM, ENVELOPE_FIELDS, STREAM_PREFIX
from common.formats import is_entry_id
from common.worker import REPLAY_FOR_FIELD, ack_record_key, entry_key

# Entries read per round trip when a view walks a stream.
PAGE = 500
# A lag Redis cannot report is counted entry by entry, up to this many (then reported as "at least").
LAG_COUNT_LIMIT = 10_000
# Entries a search reads per stream, and dead letters a count or lookup reads, at most.
SCAN_LIMIT = 200_000
DLQ_SCAN_LIMIT = 20_000
MAX_COUNT = 1000


# -- names, ids and times -----------------------------------------------------------------------------


RawEntries = list[tuple[str, dict[str, str]]]


async def _xrange(client: Any, key: str, start: str, end: str, count: int) -> RawEntries:
    """XRANGE, typed for a `decode_responses=True` client (redis-py's stubs allow bytes and None)."""
    return list(await client.xrange(key, min=start, max=end, count=count) or [])


async def _xrevrange(client: Any, key: str, end: str, start: str, count: int) -> RawEntries:
    return list(await client.xrevrange(key, max=end, min=start, count=count) or [])


def stream_key(name: str) -> str:
    """`newCard` or `events:newCard` → `events:newCard`."""
    return name if name.startswith(STREAM_PREFIX) else STREAM_PREFIX + name


def stream_type(key: str) -> str:
    """`events:newCard` → `newCard`."""
    return key[len(STREAM_PREFIX) :] if key.startswith(STREAM_PREFIX) else key


def entry_ms(entry_id: str) -> int:
    return entry_key(entry_id)[0]


def ms_to_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry_time(entry_id: str) -> str:
    """The time an entry was added, from its id (RFC 3339 UTC, milliseconds)."""
    return ms_to_time(entry_ms(entry_id))


@dataclass(frozen=True, slots=True)
class EntryRef:
    id: str
    time: str


def entry_ref(entry_id: str | None) -> EntryRef | None:
    if not entry_id or entry_id == "0-0":
        return None
    return EntryRef(entry_id, entry_time(entry_id))


def dumps(value: Any, *, indent: bool = False) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0).decode()


# -- decoded entries ------------------------------------------------------------------------------------


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


# -- streams and groups -----------------------------------------------------------------------------------


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


async def stream_keys(redis: aioredis.Redis) -> list[str]:
    """Every event stream (`events:*` keys of type stream), without the dead-letter stream."""
    keys = {key async for key in redis.scan_iter(match=STREAM_PREFIX + "*", count=1000, _type="stream")}
    keys.discard(DEAD_LETTER_STREAM)
    return sorted(keys)


async def _require_stream(redis: aioredis.Redis, name: str) -> str:
    key = stream_key(name)
    if await redis.type(key) != "stream":
        raise NotFound(f"no stream {key}", details={"stream": key})
    return key


async def _groups(redis: aioredis.Redis, key: str) -> list[dict[str, Any]]:
    return list(await redis.xinfo_groups(key))


async def _count_after(redis: aioredis.Redis, key: str, after: str, limit: int) -> tuple[int, bool]:
    """How many entries come after id `after` (exclusive), up to `limit`; and whether that is all."""
    counted, cursor = 0, after
    while counted < limit:
        wanted = min(PAGE, limit - counted)
        page = await _xrange(redis, key, "(" + cursor, "+", wanted)
        counted += len(page)
        if len(page) < wanted:
            return counted, True
        cursor = page[-1][0]
    return counted, not await _xrange(redis, key, "(" + cursor, "+", 1)


async def group_lag(redis: aioredis.Redis, key: str, group: dict[str, Any]) -> tuple[int, str]:
    """A group's lag: as Redis (≥ 7) reports it, else counted (Redis cannot tell after deletions)."""
    lag = group.get("lag")
    if lag is not None:
        return int(lag), "redis"
    counted, complete = await _count_after(redis, key, group.get("last-delivered-id") or "0-0", LAG_COUNT_LIMIT)
    return counted, "counted" if complete else "counted_at_least"


async def _dead_letter_counts(redis: aioredis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for _letter_id, fields in _walk(redis, DEAD_LETTER_STREAM, DLQ_SCAN_LIMIT):
        stream = fields.get("stream", "")
        counts[stream] = counts.get(stream, 0) + 1
    return counts


async def list_streams(redis: aioredis.Redis) -> StreamsOverview:
    keys = await stream_keys(redis)
    dead = await _dead_letter_counts(redis)
    items = []
    for key in keys:
        info = await redis.xinfo_stream(key)
        groups = await _groups(redis, key)
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
    key = await _require_stream(redis, name)
    info = await redis.xinfo_stream(key)
    dead = await _dead_letter_counts(redis)
    groups = []
    for group in sorted(await _groups(redis, key), key=lambda g: g["name"]):
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


# -- entries ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class EntryPage:
    stream: str
    items: list[Entry]
    next_from: str | None  # pass as `from` for the next page (same direction); None at the end


def _bounded_count(count: int) -> int:
    return max(1, min(count, MAX_COUNT))


async def read_entries(
    redis: aioredis.Redis, name: str, *, start: str | None = None, count: int = 20, reverse: bool = False
) -> EntryPage:
    """`count` entries from id `start` (inclusive; default: the first, or the last when `reverse`)."""
    key = await _require_stream(redis, name)
    count = _bounded_count(count)
    if reverse:
        raw = await _xrevrange(redis, key, start or "+", "-", count + 1)
    else:
        raw = await _xrange(redis, key, start or "-", "+", count + 1)
    items = [decode_entry(key, entry_id, fields) for entry_id, fields in raw[:count]]
    return EntryPage(stream=key, items=items, next_from=raw[count][0] if len(raw) > count else None)


async def tail_entries(
    redis: aioredis.Redis, name: str, *, count: int = 10, where: EntryFilter | None = None, upto: str = "+"
) -> list[Entry]:
    """The last `count` entries matching `where` up to id `upto` (inclusive), oldest first; reads back at
    most SCAN_LIMIT entries. A follower passes the id it will follow from, so nothing falls in between."""
    key = await _require_stream(redis, name)
    where = where or EntryFilter()
    found: list[Entry] = []
    cursor, read = upto, 0
    while len(found) < count and read < SCAN_LIMIT:
        page = await _xrevrange(redis, key, cursor, "-", count - len(found) if where.empty else PAGE)
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
    newest = await _xrevrange(redis, key, "+", "-", 1)
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


# -- pending entries --------------------------------------------------------------------------------------


@dataclass(slots=True)
class PendingEntry:
    id: str
    time: str
    consumer: str
    idle_ms: int  # since it was last delivered
    deliveries: int
    event_id: str | None  # None when the entry is no longer in the stream (trimmed or deleted)
    type: str | None


@dataclass(slots=True)
class PendingPage:
    stream: str
    group: str
    pending: int  # the whole pending list of the group
    consumers: dict[str, int]  # consumer → entries it holds
    items: list[PendingEntry]


async def _require_group(redis: aioredis.Redis, name: str, group: str) -> tuple[str, dict[str, Any]]:
    key = await _require_stream(redis, name)
    for info in await _groups(redis, key):
        if info["name"] == group:
            return key, info
    raise NotFound(f"no group {group} on {key}", details={"stream": key, "group": group})


async def pending_entries(
    redis: aioredis.Redis, name: str, group: str, *, count: int = 100, consumer: str | None = None
) -> PendingPage:
    """A group's pending entries, oldest first: who holds each, for how long, how often delivered."""
    key, _info = await _require_group(redis, name, group)
    client: Any = redis
    summary = await client.xpending(key, group)
    raw = await client.xpending_range(key, group, min="-", max="+", count=_bounded_count(count), consumername=consumer)
    async with redis.pipeline(transaction=False) as pipe:
        for item in raw:
            pipe.xrange(key, min=item["message_id"], max=item["message_id"], count=1)
        entries = await pipe.execute()
    items = []
    for item, found in zip(raw, entries, strict=True):
        fields = found[0][1] if found else None
        items.append(
            PendingEntry(
                id=item["message_id"],
                time=entry_time(item["message_id"]),
                consumer=item["consumer"],
                idle_ms=int(item["time_since_delivered"]),
                deliveries=int(item["times_delivered"]),
                event_id=fields.get("id") if fields else None,
                type=fields.get("type") if fields else None,
            )
        )
    return PendingPage(
        stream=key,
        group=group,
        pending=int(summary["pending"]),
        consumers={c["name"]: int(c["pending"]) for c in summary.get("consumers") or []},
        items=items,
    )


# -- dead letters -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class DeadLetter:
    """An entry of events:dlq: which entry failed where, why, and the envelope to replay."""

    id: str  # its id in events:dlq
    time: str
    stream: str
    entry_id: str
    entry_time: str | None
    group: str
    consumer: str
    error: str
    deliveries: int
    failed_at: str
    event_id: str
    event_type: str
    correlation_id: str
    envelope: dict[str, Any]  # the original stream fields (`data` parsed when it is JSON)


def decode_dead_letter(letter_id: str, fields: dict[str, str]) -> DeadLetter:
    try:
        envelope = orjson.loads(fields.get("envelope") or "{}")
    except orjson.JSONDecodeError:
        envelope = {}
    if not isinstance(envelope, dict):
        envelope = {}
    shown = dict(envelope)
    if isinstance(shown.get("data"), str):
        with contextlib.suppress(orjson.JSONDecodeError):
            shown["data"] = orjson.loads(shown["data"])
    entry_id = fields.get("entry_id", "")
    try:
        deliveries = int(fields.get("deliveries") or 0)
    except ValueError:
        deliveries = 0
    return DeadLetter(
        id=letter_id,
        time=entry_time(letter_id),
        stream=fields.get("stream", ""),
        entry_id=entry_id,
        entry_time=entry_time(entry_id) if is_entry_id(entry_id) else None,
        group=fields.get("group", ""),
        consumer=fields.get("consumer", ""),
        error=fields.get("error", ""),
        deliveries=deliveries,
        failed_at=fields.get("failed_at", ""),
        # A malformed entry was dead-lettered without a decoded event: take what its fields say.
        event_id=fields.get("event_id") or str(envelope.get("id") or ""),
        event_type=fields.get("event_type") or str(envelope.get("type") or ""),
        correlation_id=fields.get("correlation_id") or str(envelope.get("correlation_id") or ""),
        envelope=shown,
    )


@dataclass(slots=True)
class DeadLetterPage:
    items: list[DeadLetter]
    total: int  # length of events:dlq
    next_from: str | None


async def _walk(redis: aioredis.Redis, key: str, limit: int = SCAN_LIMIT) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Every entry of a stream, oldest first, page by page, at most `limit`."""
    cursor, read = "-", 0
    while read < limit:
        page = await _xrange(redis, key, cursor, "+", min(PAGE, limit - read))
        for entry_id, fields in page:
            yield entry_id, fields or {}
        read += len(page)
        if len(page) < PAGE:
            return
        cursor = "(" + page[-1][0]


async def list_dead_letters(
    redis: aioredis.Redis,
    *,
    start: str | None = None,
    count: int = 20,
    stream: str | None = None,
    group: str | None = None,
) -> DeadLetterPage:
    """Dead letters, oldest first, from id `start`; optionally of one stream and/or group."""
    count = _bounded_count(count)
    wanted_stream = stream_key(stream) if stream else None
    items: list[DeadLetter] = []
    next_from = None
    cursor, read = start or "-", 0
    while read < DLQ_SCAN_LIMIT:
        page = await _xrange(redis, DEAD_LETTER_STREAM, cursor, "+", PAGE)
        read += len(page)
        for letter_id, fields in page:
            letter = decode_dead_letter(letter_id, fields or {})
            if (wanted_stream and letter.stream != wanted_stream) or (group and letter.group != group):
                continue
            if len(items) == count:
                next_from = letter_id
                break
            items.append(letter)
        if next_from or len(page) < PAGE:
            break
        cursor = "(" + page[-1][0]
    return DeadLetterPage(items=items, total=await redis.xlen(DEAD_LETTER_STREAM), next_from=next_from)


async def get_dead_letter(redis: aioredis.Redis, letter_id: str) -> DeadLetter:
    fields = await _dead_letter_fields(redis, letter_id)
    return decode_dead_letter(letter_id, fields)


async def _dead_letter_fields(redis: aioredis.Redis, letter_id: str, client: Any = None) -> dict[str, str]:
    found: RawEntries = []
    if is_entry_id(letter_id, full=True):
        found = await _xrange(client or redis, DEAD_LETTER_STREAM, letter_id, letter_id, 1)
    if not found:
        raise NotFound(f"no dead letter {letter_id}", details={"id": letter_id})
    return dict(found[0][1] or {})


@dataclass(slots=True)
class ReplayResult:
    dead_letter_id: str
    stream: str
    group: str
    entry_id: str  # the new entry, in `stream`
    time: str
    event_id: str


async def replay_dead_letter(redis: aioredis.Redis, letter_id: str) -> ReplayResult:
    """Put a dead letter's envelope back on its stream for its group only, and remove it from events:dlq.

    Both in one MULTI, watched: if the letter is dropped or replayed concurrently, nothing is added
    twice (the loser finds it gone: 404).
    """
    for _attempt in range(10):
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(DEAD_LETTER_STREAM)
                fields = await _dead_letter_fields(redis, letter_id, client=pipe)
                letter = decode_dead_letter(letter_id, fields)
                try:
                    envelope = orjson.loads(fields.get("envelope") or "{}")
                except orjson.JSONDecodeError:
                    envelope = None
                if not envelope or not isinstance(envelope, dict) or not letter.stream or not letter.group:
                    raise Conflict(
                        "this dead letter has no envelope, stream or group to replay it to", details={"id": letter_id}
                    )
                replayed = {str(k): str(v) for k, v in envelope.items() if k != REPLAY_FOR_FIELD}
                replayed[REPLAY_FOR_FIELD] = letter.group
                pipe.multi()
                pipe.xadd(letter.stream, replayed)  # type: ignore[arg-type]
                pipe.xdel(DEAD_LETTER_STREAM, letter_id)
                new_id, _deleted = await pipe.execute()
            except WatchError:
                continue  # events:dlq changed meanwhile (another dead letter, most likely): look again
        return ReplayResult(
            dead_letter_id=letter_id,
            stream=letter.stream,
            group=letter.group,
            entry_id=new_id,
            time=entry_time(new_id),
            event_id=letter.event_id,
        )
    raise Conflict("events:dlq kept changing; try again", details={"id": letter_id})


async def drop_dead_letter(redis: aioredis.Redis, letter_id: str) -> None:
    if not is_entry_id(letter_id, full=True) or not await redis.xdel(DEAD_LETTER_STREAM, letter_id):
        raise NotFound(f"no dead letter {letter_id}", details={"id": letter_id})


# -- finding events, tracing requests ---------------------------------------------------------------------


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
    limit = _bounded_count(limit)

    def wanted(fields: dict[str, str]) -> bool:
        return bool(
            (event_id and fields.get("id") == event_id)
            or (correlation_id and fields.get("correlation_id") == correlation_id)
        )

    hits: list[Entry] = []
    truncated = False
    for key in await stream_keys(redis):
        read = 0
        async for entry_id, fields in _walk(redis, key, scan_limit):
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
    async for letter_id, fields in _walk(redis, DEAD_LETTER_STREAM, DLQ_SCAN_LIMIT):
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
        groups_of[key] = sorted(await _groups(redis, key), key=lambda g: g["name"])
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
