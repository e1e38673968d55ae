"""The numbers the messaging mechanisms can report about themselves, read when someone asks.

Prometheus scrapes a process; its metrics (`common.service.metrics`) then ask each registered
producer for its `readings()`: a consumer worker its group's lag and pending entries, the outbox relay
its backlog, the gateway every group of every stream and the dead letters. Producers know how to read
their numbers (which streams, which table); metrics know how to show them. Neither reaches into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common.core.envelope import DEAD_LETTER_STREAM
from common.messaging.views.groups import group_lag
from common.messaging.views.reading import stream_keys


@dataclass(frozen=True, slots=True)
class GroupBacklog:
    """One consumer group on one stream: entries not handed to it yet, and handed out but not acknowledged."""

    stream: str
    group: str
    lag: int
    pending: int


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    rows: int  # outbox rows not relayed yet
    oldest_age_s: float  # age of the oldest of them (0: none)


@dataclass(frozen=True, slots=True)
class DeadLetters:
    count: int  # entries in events:dlq


Reading = GroupBacklog | OutboxBacklog | DeadLetters


async def group_backlogs(redis: aioredis.Redis, streams: Iterable[str], only: str | None) -> list[GroupBacklog]:
    """The backlog of every group (or only group `only`) of `streams`; a stream that does not exist has none."""
    found: list[GroupBacklog] = []
    for stream in streams:
        try:
            groups = await redis.xinfo_groups(stream)
        except ResponseError:  # no such stream (yet)
            continue
        for group in groups:
            name = group["name"]
            if only is not None and name != only:
                continue
            lag, _source = await group_lag(redis, stream, group)
            found.append(GroupBacklog(stream, name, lag, int(group["pending"])))
    return found


class StreamGroups:
    """Every consumer group of every event stream, and the dead letters: what the gateway reports, so the
    lag of a service that is down still shows."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def readings(self) -> list[Reading]:
        readings: list[Reading] = list(await group_backlogs(self._redis, await stream_keys(self._redis), None))
        readings.append(DeadLetters(await self._redis.xlen(DEAD_LETTER_STREAM)))
        return readings
