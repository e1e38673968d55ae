"""The dead-letter stream `events:dlq`: list, count per stream, show, replay for one group, drop."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from common.core.envelope import DEAD_LETTER_STREAM
from common.core.errors import Conflict, NotFound
from common.core.formats import is_entry_id
from common.messaging.views.reading import (
    DLQ_SCAN_LIMIT,
    PAGE,
    RawEntries,
    bounded_count,
    walk,
    xrange_entries,
)
from common.redis.ids import entry_time
from common.redis.keys import REPLAY_FOR_FIELD, stream_key


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


async def dead_letter_counts(redis: aioredis.Redis) -> dict[str, int]:
    counts: dict[str, int] = {}
    async for _letter_id, fields in walk(redis, DEAD_LETTER_STREAM, DLQ_SCAN_LIMIT):
        stream = fields.get("stream", "")
        counts[stream] = counts.get(stream, 0) + 1
    return counts


async def list_dead_letters(
    redis: aioredis.Redis,
    *,
    start: str | None = None,
    count: int = 20,
    stream: str | None = None,
    group: str | None = None,
) -> DeadLetterPage:
    """Dead letters, oldest first, from id `start`; optionally of one stream and/or group."""
    count = bounded_count(count)
    wanted_stream = stream_key(stream) if stream else None
    items: list[DeadLetter] = []
    next_from = None
    cursor, read = start or "-", 0
    while read < DLQ_SCAN_LIMIT:
        page = await xrange_entries(redis, DEAD_LETTER_STREAM, cursor, "+", PAGE)
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
        found = await xrange_entries(client or redis, DEAD_LETTER_STREAM, letter_id, letter_id, 1)
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
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
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
