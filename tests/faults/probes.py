"""What the fault tests look at besides the API: consumer groups, dead letters, the checker's report."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.core.settings import Settings
from common.messaging.views import DeadLetter, list_dead_letters, list_streams, stream_keys
from common.redis.ids import entry_key
from common.swarm.check import Report, declared_checks, wait_converged
from common.swarm.supervisor import Swarm


def redis_client(url: str) -> aioredis.Redis:
    """A client that reconnects by itself (the fault tests restart the server it talks to)."""
    return aioredis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=20),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


@dataclass(frozen=True)
class Held:
    """An entry handed to a consumer and not acknowledged by it (yet)."""

    stream: str
    entry_id: str
    event_id: str


def process_consumers(consumer_name: str) -> list[str]:
    """The consumers of one process: its CONSUMER_CONCURRENCY loops (common.http.contexts.consumer_context)."""
    loops = Settings().consumer_concurrency
    return [consumer_name, *(f"{consumer_name}.{i}" for i in range(1, loops))]


async def held_by(redis: aioredis.Redis, group: str, consumer_name: str) -> list[Held]:
    """What the process named `consumer_name` holds pending in `group` (any of its loops), over every stream."""
    held: list[Held] = []
    for key in await stream_keys(redis):
        if group not in {g["name"] for g in await redis.xinfo_groups(key)}:
            continue
        for consumer in process_consumers(consumer_name):
            pending_entries = await redis.xpending_range(
                key, group, min="-", max="+", count=1000, consumername=consumer
            )
            for pending in pending_entries:
                entry_id = str(pending["message_id"])
                found = await xrange(redis, key, entry_id, entry_id)
                held.append(Held(key, entry_id, found[0][1].get("id", "") if found else ""))
    return held


@contextlib.asynccontextmanager
async def inbox_locked(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold a lock on a service's inbox table: a batch its consumer starts applying waits inside its
    transaction (on the inbox insert of its first event) until the lock goes, i.e. it is mid-batch."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE inbox IN EXCLUSIVE MODE")  # blocks INSERTs, not SELECTs
            yield conn
    finally:
        await conn.close()


async def lock_waiters(conn: asyncpg.Connection) -> int:
    """Sessions of this database waiting for a lock."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def unsettled_streams(redis: aioredis.Redis) -> dict[str, dict[str, int]]:
    """Streams where some group has entries not delivered yet (lag) or not acknowledged (pending)."""
    overview = await list_streams(redis)
    return {s.stream: {"lag": s.lag, "pending": s.pending} for s in overview.items if s.lag or s.pending}


async def dead_letters(redis: aioredis.Redis) -> list[DeadLetter]:
    return (await list_dead_letters(redis, count=1000)).items


async def converged(swarm: Swarm, urls: Mapping[str, str], timeout_s: float = 30.0) -> Report:
    """`swarm check --wait`: every service's REPLICA_CHECKS, re-run until clean or `timeout_s`."""
    checks = declared_checks(spec.name for spec in swarm.services)
    return await wait_converged(urls, checks, timeout_s=timeout_s, interval_s=0.25)


def describe(report: Report, limit: int = 20) -> str:
    shown = [f.to_dict() for f in report.findings[:limit]]
    more = len(report.findings) - len(shown)
    return json.dumps(shown, indent=1) + (f"\n… and {more} more" if more > 0 else "")


Entries = list[tuple[str, dict[str, str]]]


async def xrange(redis: aioredis.Redis, key: str, low: str = "-", high: str = "+") -> Entries:
    """XRANGE on a client that decodes responses (typed as such)."""
    return cast(Entries, await redis.xrange(key, low, high) or [])


async def stream_entries(redis: aioredis.Redis, key: str) -> Entries:
    return await xrange(redis, key)


async def notices_not_stored(redis: aioredis.Redis, notif_dsn: str) -> list[tuple[str, str]]:
    """(event id, recipient) of every newNotif in its stream that notif_svc has no notification for."""
    missing, _extra = await notice_mismatch(redis, notif_dsn)
    return missing


async def notice_mismatch(redis: aioredis.Redis, notif_dsn: str) -> tuple[list[tuple[str, str]], int]:
    """Notifications missing for the newNotif events of the stream, and how many notif_svc has beyond
    one per (event, recipient) of the stream (a duplicate, or one nobody published)."""
    wanted: set[tuple[str, str]] = set()
    for _entry_id, fields in await stream_entries(redis, "events:newNotif"):
        data = json.loads(fields["data"])
        wanted.update((fields["id"], recipient) for recipient in data["recipients"])
    rows = await fetch(notif_dsn, "SELECT event_id::text, recipient_id::text FROM notifications")
    stored = [(r["event_id"], r["recipient_id"]) for r in rows]
    return sorted(wanted - set(stored)), len(stored) - len(wanted & set(stored))


async def inbox_mismatch(redis: aioredis.Redis, service: str, dsn: str) -> dict[str, int]:
    """A consuming service's inbox against its streams: every distinct event id of every stream its
    group follows must be there (applied), and nothing else (the primary key rules out twice)."""
    wanted: set[str] = set()
    for key in await stream_keys(redis):
        if service in {g["name"] for g in await redis.xinfo_groups(key)}:
            wanted.update(fields["id"] for _, fields in await stream_entries(redis, key))
    applied = {r["event_id"] for r in await fetch(dsn, "SELECT event_id::text FROM inbox")}
    return {"not applied": len(wanted - applied), "applied but not in its streams": len(applied - wanted)}


async def fetch(dsn: str, sql: str, *args: Any) -> Sequence[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def flowing_past(redis: aioredis.Redis, stream: str, group: str, stuck_entry: str) -> bool:
    """Whether `group` has acknowledged entries that came after `stuck_entry` while it is still pending.

    False while that cannot be told yet (the entry not delivered, nothing after it acknowledged);
    fails if the entry left the pending list before anything after it was acknowledged, i.e. later
    events waited for it.
    """
    info = {g["name"]: g for g in await redis.xinfo_groups(stream)}[group]
    last_delivered = info["last-delivered-id"]
    if entry_key(last_delivered) < entry_key(stuck_entry):
        return False  # not even delivered yet
    pending = {p["message_id"] for p in await redis.xpending_range(stream, group, min="-", max="+", count=10_000)}
    later_done = [e for e, _ in await xrange(redis, stream, "(" + stuck_entry, last_delivered) if e not in pending]
    if stuck_entry not in pending:
        raise AssertionError(f"{stuck_entry} left {group}'s pending list before any later entry was acknowledged")
    return bool(later_done)
