"""A consumer group's pending entries: delivered, not acknowledged; who holds each, since when, how often."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from common.core.errors import NotFound
from common.messaging.views.reading import bounded_count, group_infos, require_stream
from common.redis.ids import entry_time


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
    key = await require_stream(redis, name)
    for info in await group_infos(redis, key):
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
    raw = await client.xpending_range(key, group, min="-", max="+", count=bounded_count(count), consumername=consumer)
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
