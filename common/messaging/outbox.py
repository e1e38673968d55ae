"""Transactional outbox: write events with the change, relay them to Redis after commit.

`enqueue(conn, events)` runs inside the caller's transaction, so an event exists if and only if the
change that caused it committed. `OutboxRelay` moves committed rows to their streams:
- woken by `LISTEN outbox` (the insert trigger notifies on commit), with a polling fallback for when
  the listening connection is down or a notification is missed;
- rows are claimed with `FOR UPDATE SKIP LOCKED`, so several replicas relay side by side without
  publishing a row twice; a row is deleted only after its XADD succeeded, in the same transaction;
- and, when the primary has replicas, only after `WAIT` confirmed the XADDs on `REDIS_MIN_REPLICAS_ACK` of
  them (`common.redis.replicas`): a primary killed right after answering must not take with it an event
  whose row is already gone. A WAIT that falls short rolls the batch back: the rows stay for the next
  pass, which XADDs them again. A duplicate is harmless (consumers dedupe by event id), a loss is not;
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
from common.redis.replicas import ReplicaQuorum

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


class ReplicasBehind(Exception):
    """WAIT answered that fewer replicas than required hold the batch: it is not durable yet."""

    def __init__(self, required: int, acknowledged: int) -> None:
        super().__init__(f"{acknowledged} of {required} replicas acknowledged the batch")
        self.required = required
        self.acknowledged = acknowledged


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
        min_replicas_ack: int | None = None,
        wait_timeout_ms: int = 1000,
    ) -> None:
        """`min_replicas_ack`: replicas that must hold a batch before its rows go (None: "auto", see
        `common.redis.replicas`); `wait_timeout_ms`: how long WAIT may block before the batch stays."""
        self._pool = pool
        self._redis = redis
        self._dsn = dsn
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._listener: asyncpg.Connection | None = None
        self._metrics = metrics
        self._quorum = ReplicaQuorum(min_replicas_ack)
        self._wait_timeout_ms = wait_timeout_ms
        self.published = 0

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows; return how many were published.

        Raises ReplicasBehind (after rolling the batch back) when WAIT confirms it on too few replicas.
        """
        required = await self._quorum.required(self._redis)
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
                if required:
                    # In the same pipeline, hence on the same connection as the XADDs (a redis-py pipeline
                    # takes one connection for its whole execute): WAIT waits for the writes of its own
                    # connection only, so on any other connection it would answer at once, confirming nothing.
                    pipe.wait(required, self._wait_timeout_ms)
                answers = await pipe.execute()
            if required and int(answers[-1]) < required:
                raise ReplicasBehind(required, int(answers[-1]))  # leaves the transaction: rows roll back
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
            except ReplicasBehind as exc:
                # A replica lags or is gone: back off (each retry XADDs the batch again) and look at the
                # primary's replicas afresh, so a replica that left for good stops being waited for.
                self._quorum.forget()
                wait_s = backoff.next_delay()
                log.warning(
                    "outbox.replicas_behind",
                    required=exc.required,
                    acknowledged=exc.acknowledged,
                    retry_in_s=round(wait_s, 3),
                )
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Redis or PostgreSQL is down: the rows stay in the outbox, nothing is lost; retry later
                # (after a fail-over, the promoted primary may have no replica: look again).
                self._quorum.forget()
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
