"""How the views read Redis: page sizes and limits, typed range reads, walking a whole stream.

Every function takes a redis.asyncio client made with `decode_responses=True`
(`common.redis.client.make_redis`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis

from common.core.envelope import DEAD_LETTER_STREAM, STREAM_PREFIX
from common.core.errors import NotFound
from common.redis.keys import stream_key

# Entries read per round trip when a view walks a stream.
PAGE = 500


# Entries a search reads per stream, and dead letters a count or lookup reads, at most.
SCAN_LIMIT = 200_000


DLQ_SCAN_LIMIT = 20_000


MAX_COUNT = 1000


RawEntries = list[tuple[str, dict[str, str]]]


async def xrange_entries(client: Any, key: str, start: str, end: str, count: int) -> RawEntries:
    """XRANGE, typed for a `decode_responses=True` client (redis-py's stubs allow bytes and None)."""
    return list(await client.xrange(key, min=start, max=end, count=count) or [])


async def xrevrange_entries(client: Any, key: str, end: str, start: str, count: int) -> RawEntries:
    return list(await client.xrevrange(key, max=end, min=start, count=count) or [])


async def walk(redis: aioredis.Redis, key: str, limit: int = SCAN_LIMIT) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Every entry of a stream, oldest first, page by page, at most `limit`."""
    cursor, read = "-", 0
    while read < limit:
        page = await xrange_entries(redis, key, cursor, "+", min(PAGE, limit - read))
        for entry_id, fields in page:
            yield entry_id, fields or {}
        read += len(page)
        if len(page) < PAGE:
            return
        cursor = "(" + page[-1][0]


async def stream_keys(redis: aioredis.Redis) -> list[str]:
    """Every event stream (`events:*` keys of type stream), without the dead-letter stream."""
    keys = {key async for key in redis.scan_iter(match=STREAM_PREFIX + "*", count=1000, _type="stream")}
    keys.discard(DEAD_LETTER_STREAM)
    return sorted(keys)


async def require_stream(redis: aioredis.Redis, name: str) -> str:
    key = stream_key(name)
    if await redis.type(key) != "stream":
        raise NotFound(f"no stream {key}", details={"stream": key})
    return key


async def group_infos(redis: aioredis.Redis, key: str) -> list[dict[str, Any]]:
    return list(await redis.xinfo_groups(key))


def bounded_count(count: int) -> int:
    return max(1, min(count, MAX_COUNT))


def dumps(value: Any, *, indent: bool = False) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0).decode()
