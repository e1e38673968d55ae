"""Retention fixtures: streams with entries of chosen ages, consumer groups in chosen states, and the
`swarm` command line as a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys

import redis.asyncio as aioredis

from common.core.envelope import Event, stream_for
from common.redis.ids import entry_key

SWARM = [sys.executable, "-c", "from common.swarm.cli import main; main()"]
DAY_MS = 86_400_000


async def now_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def add(
    redis: aioredis.Redis, event_type: str, name: str, *, days_ago: float | None = None, at_ms: int | None = None
) -> str:
    """XADD one event; `days_ago` or `at_ms` gives it an entry id of that age or time (entries must be added
    oldest first)."""
    event = Event(
        type=event_type, data={"name": name}, producer="test", correlation_id=f"corr-{name}", actor_id=f"actor-{name}"
    )
    if days_ago is not None:
        at_ms = await now_ms(redis) - int(days_ago * DAY_MS)
    entry_id = "*" if at_ms is None else f"{at_ms}-0"
    return str(await redis.xadd(stream_for(event_type), event.to_fields(), id=entry_id))  # type: ignore[arg-type]


async def noon_days_ago(redis: aioredis.Redis, days: int) -> int:
    """12:00 UTC of the day `days` ago, in ms: entries an hour around it are on that day."""
    return (await now_ms(redis) - days * DAY_MS) // DAY_MS * DAY_MS + DAY_MS // 2


async def consume(
    redis: aioredis.Redis, stream: str, group: str, consumer: str, *, count: int | None = None, ack: bool = True
) -> list[str]:
    """Read `count` new entries as `consumer` of `group` (created at id 0 if need be); ack them or not."""
    groups = {g["name"] for g in await redis.xinfo_groups(stream)}
    if group not in groups:
        await redis.xgroup_create(stream, group, id="0")
    response = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count)
    ids = [entry_id for entry_id, _fields in response[0][1]] if response else []
    if ack and ids:
        await redis.xack(stream, group, *ids)
    return ids


async def ids_of(redis: aioredis.Redis, stream: str) -> list[str]:
    return [entry_id for entry_id, _fields in await redis.xrange(stream)]


def below(entry_id: str, ids: list[str]) -> list[str]:
    return [other for other in ids if entry_key(other) < entry_key(entry_id)]


async def swarm(*args: str, redis_url: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run `swarm ARGS` against `redis_url`, as an operator would (stdout is a pipe: no colours)."""
    env = {**os.environ, "REDIS_URL": redis_url, "SWARM_DATA_DIR": "/nonexistent", "COLUMNS": "250"}
    process = await asyncio.create_subprocess_exec(
        *SWARM, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, out.decode(), err.decode()
