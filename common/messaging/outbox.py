"""Transactional outbox: write events with the change, relay them to Redis after commit.

`enqueue(conn, events)` runs inside the caller's transaction, so an event exists if and only if the
change that caused it committed. `OutboxRelay` moves committed rows to their streams:
- woken by `LISTEN outbox` (the insert trigger notifies on commit), with a polling fallback for when
  the listening connection is down or a notification is missed;
- rows are claimed with `FOR UPDATE SKIP LOCKED`, so several replicas relay side by side without
  publishing a row twice; a row is deleted only after its XADD succeeded, in the same transaction;
- it never tails by "last seq seen": bigserial values can commit out of order, and a tailing relay
  would skip the late one. It always takes whatever unpublished rows exist.
A crash between XADD and commit republishes the row: consumers dedupe by event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

import asyncpg
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from common.core.envelope import Event
from common.core.retry import Backoff
from common.db.pool import connect
from common.messaging.readings import OutboxBacklog

log = structlog.get_logger("outbox")

CHANNEL = "outbox"
# A sample must not wait long for a connection: Prometheus times the scrape out anyway.
_READING_ACQUIRE_TIMEOUT_S = 2.0


class PublishCounter(Protocol):
    """Where the relay counts the events it publishes, per stream (the service's metrics)."""

    def published(self, stream: str, count: int = 1) -> None: ...


async def enqueue(conn: asyncpg.Connection, events: Iterable[Event]) -> None:
    """Record events in the outbox; call inside the transaction that makes the change."""
    rows = [(event.id, event.stream, event.to_fields()) for event in events]
    if rows:
        await conn.executemany("INSERT INTO outbox (event_id, stream, fields) VALUES ($1, $2, $3)", rows)


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        dsn: str,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        metrics: PublishCounter | None = None,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._dsn = dsn
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._metrics = metrics
        self.published = 0

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows; return how many were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, stream, fields FROM outbox ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                return 0
            async with self._redis.pipeline(transaction=False) as pipe:
                for row in rows:
                    pipe.xadd(row["stream"], row["fields"])
                await pipe.execute()
            await conn.execute("DELETE FROM outbox WHERE seq = ANY($1::bigint[])", [r["seq"] for r in rows])
        self.published += len(rows)
        if self._metrics is not None:
            for stream, count in Counter(row["stream"] for row in rows).items():
                self._metrics.published(stream, count)
        return len(rows)

    async def readings(self) -> list[OutboxBacklog]:
        """How many rows wait to be relayed, and how old the oldest is (for metrics)."""
        async with self._pool.acquire(timeout=_READING_ACQUIRE_TIMEOUT_S) as conn:
            row = await conn.fetchrow(
                "SELECT count(*) AS backlog, EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)) AS age FROM outbox"
            )
        return [OutboxBacklog(int(row["backlog"]), max(float(row["age"] or 0), 0.0))]

    def stop(self) -> None:
        """Finish the batch in flight (never abandon a claimed batch half-way) and return."""
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            await self._ensure_listener()
            # Cleared before the pass, not after it: a commit notified while a pass runs must lead to
            # another pass now, not at the next poll.
            self._wakeup.clear()
            try:
                published = await self.relay_once()
                backoff.reset()
                wait_s = 0.0 if published == self._batch_size else self._poll_interval_s  # full: more waiting
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Redis or PostgreSQL is down: the rows stay in the outbox, nothing is lost; retry later.
                wait_s = backoff.next_delay()
                log.warning("outbox.relay_failed", error=repr(exc), retry_in_s=round(wait_s, 3))
            if wait_s and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await connect(self._dsn)
            await self._listener.add_listener(CHANNEL, lambda *_: self._wakeup.set())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._listener = None
            log.warning("outbox.listen_failed", error=repr(exc))

    async def close(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(Exception):
                await self._listener.close()
        self._listener = None
