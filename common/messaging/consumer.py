"""The consumer-group worker: reads the streams a service follows and applies their events once.

One loop, no hidden concurrency, in this order of priority:
1. at start, and whenever a retry is due, re-read this consumer's own pending entries (id `0`);
2. every `claim_interval`, take over entries idle on other (dead) consumers with `XAUTOCLAIM`,
   following its cursor until the whole pending list was scanned;
3. otherwise, one blocking `XREADGROUP ... >` over all followed streams, in batches.

A batch is applied in one PostgreSQL transaction: the event ids go into the `inbox` table in the same
transaction as the handlers' effects, so a redelivered event is skipped. Runs of same-type events go
to a `BulkHandler` in one call. A failing handler rolls back only its own event: the batch is then
redone with a savepoint per event (`common.messaging.apply`). Entries are `XACK`ed only after the commit
(`common.messaging.settle`); a crash anywhere before that leaves them pending, to be redelivered (and
skipped if they had committed). What a handler is and may do: `common.messaging.handlers`.

An entry whose handler fails stays pending and is retried with a growing delay; after
`max_deliveries` deliveries it goes to `events:dlq` with its error and is acknowledged, so the rest
of the stream keeps flowing. Infrastructure failures (database or Redis down) are not the event's
fault: the batch is retried as it is, without consuming deliveries, until the dependency is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.core.envelope import Event, MalformedEvent, stream_for
from common.core.retry import Backoff
from common.core.tasks import sleep_unless
from common.messaging.apply import BatchApplier, Delivery, WorkerStats
from common.messaging.handlers import Handler
from common.messaging.readings import GroupBacklog, group_backlogs
from common.messaging.settle import Settler
from common.redis.ids import entry_key
from common.redis.keys import REPLAY_FOR_FIELD

log = structlog.get_logger("worker")


class ConsumeCounter(Protocol):
    """Where a worker counts the entries it settles, by outcome (the service's metrics)."""

    def consumed(self, group: str, stream: str, outcome: str, count: int = 1) -> None: ...


@dataclass
class WorkerOptions:
    batch_size: int = 100
    block_ms: int = 2000
    claim_idle_ms: int = 30_000
    claim_interval_ms: int = 5_000
    retry_delay_ms: int = 500
    max_deliveries: int = 5
    trace_retention_s: int = 7 * 24 * 3600  # how long ack records live; 0: not recorded
    # A consumer of the group idle this long with nothing pending (a replica that went away) is removed
    # from the group, so XINFO stays readable after many deploys; 0: never.
    delete_idle_consumer_ms: int = 3_600_000


class ConsumerWorker:
    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        pool: asyncpg.Pool,
        group: str,
        consumer: str,
        handlers: Mapping[str, Handler],
        options: WorkerOptions | None = None,
        metrics: ConsumeCounter | None = None,
    ) -> None:
        self._redis = redis
        self.group = group
        self.consumer = consumer
        self._handlers = dict(handlers)
        self._streams = [stream_for(event_type) for event_type in self._handlers]
        self._options = options or WorkerOptions()
        self._stopping = asyncio.Event()
        # Due immediately: a consumer starts by re-reading its own pending entries (id 0).
        self._retry_at: float | None = 0.0
        self._groups_ready = False
        self._next_claim_at = 0.0
        self._next_sweep_at = 0.0
        self._claim_cursors = {stream: "0-0" for stream in self._streams}
        self.stats = WorkerStats()
        self._metrics = metrics
        self.running = False
        self._log = log.bind(group=group, consumer=consumer)
        self._applier = BatchApplier(
            pool=pool,
            handlers=self._handlers,
            stats=self.stats,
            stopping=self._stopping,
            log=self._log,
            count=self._count,
        )
        self._settler = Settler(
            redis=redis,
            group=group,
            consumer=consumer,
            trace_retention_s=self._options.trace_retention_s,
            stats=self.stats,
            log=self._log,
            count=self._count,
        )

    @property
    def streams(self) -> list[str]:
        """The streams this worker reads, one per event type it handles."""
        return list(self._streams)

    async def readings(self) -> list[GroupBacklog]:
        """This worker's group on each stream it reads: lag and pending entries (for metrics)."""
        return await group_backlogs(self._redis, self._streams, self.group)

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return. Nothing unprocessed gets acknowledged."""
        self._stopping.set()

    async def run(self) -> None:
        if not self._streams:
            return
        backoff = Backoff()
        self.running = True
        try:
            while not self._stopping.is_set():
                try:
                    await self._step()
                    backoff.reset()
                except ResponseError as exc:
                    if not str(exc).startswith("NOGROUP"):
                        raise
                    await self._recover_lost_group(exc)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    delay = backoff.next_delay()
                    self._log.warning("worker.redis_unavailable", error=repr(exc), retry_in_s=round(delay, 3))
                    await self._sleep(delay)
        finally:
            self.running = False
            self._log.info("worker.stopped", **self._stats_fields())

    async def _step(self) -> None:
        if not self._groups_ready:
            await self._ensure_groups(start_id="0")
            self._groups_ready = True
        now = time.monotonic()
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            await self._drain_own_pending()
        if now >= self._next_claim_at:
            self._next_claim_at = now + self._options.claim_interval_ms / 1000
            await self._reclaim_idle()
        if self._options.delete_idle_consumer_ms and now >= self._next_sweep_at:
            # Often enough to notice a consumer crossing the limit, never more than once a minute.
            self._next_sweep_at = now + min(self._options.delete_idle_consumer_ms / 2000, 60.0)
            await self._remove_idle_consumers()
        deliveries = await self._read_new()
        if deliveries:
            await self._process(deliveries)

    # -- reading -----------------------------------------------------------------------------------

    async def _ensure_groups(self, start_id: str) -> None:
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, self.group, id=start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _recover_lost_group(self, exc: ResponseError) -> None:
        # Redis restarted without persistence or was flushed. Re-reading from 0 redelivers whatever the
        # streams still hold; the inbox makes that harmless. Logged as an error: someone must know.
        self.stats.groups_recreated += 1
        self._log.error(
            "worker.consumer_group_lost",
            error=str(exc),
            action="recreating consumer groups from id 0; already-applied events will be skipped",
            streams=self._streams,
        )
        self._claim_cursors = {stream: "0-0" for stream in self._streams}
        await self._ensure_groups(start_id="0")

    def _block_ms(self) -> int:
        """Block no longer than the next reclaim or retry is due, so neither waits on idle streams."""
        deadline = self._next_claim_at
        if self._retry_at is not None:
            deadline = min(deadline, self._retry_at)
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        return max(1, min(self._options.block_ms, remaining_ms))

    async def _read_new(self) -> list[Delivery]:
        read = asyncio.ensure_future(
            self._redis.xreadgroup(
                self.group,
                self.consumer,
                {stream: ">" for stream in self._streams},
                count=self._options.batch_size,
                block=self._block_ms(),
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({read, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not read.done():
            # Stopping while blocked. Anything Redis hands us from here on stays pending on this
            # consumer and is re-read (id 0) at the next start, or reclaimed by another replica.
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError):
                await read
            return []
        return self._deliveries(read.result())

    def _deliveries(self, response: Any) -> list[Delivery]:
        found: list[Delivery] = []
        items = response.items() if isinstance(response, dict) else response or []
        for stream, entries in items:
            for entry_id, fields in entries:
                found.append(Delivery(stream, entry_id, fields or None))
        return found

    async def _drain_own_pending(self) -> None:
        """Re-read every entry this consumer holds pending, oldest first, following an id cursor."""
        cursors: dict[Any, Any] = {stream: "0" for stream in self._streams}
        while cursors and not self._stopping.is_set():
            response = await self._redis.xreadgroup(self.group, self.consumer, cursors, count=self._options.batch_size)
            deliveries = self._deliveries(response)
            seen = {d.stream for d in deliveries}
            for stream in list(cursors):
                if stream not in seen:
                    del cursors[stream]
            for delivery in deliveries:
                cursors[delivery.stream] = delivery.entry_id
            if deliveries:
                await self._count_deliveries(deliveries)
                await self._process(deliveries)

    async def _reclaim_idle(self) -> None:
        for stream in self._streams:
            while not self._stopping.is_set():
                next_cursor, claimed, *_deleted = await self._redis.xautoclaim(
                    stream,
                    self.group,
                    self.consumer,
                    min_idle_time=self._options.claim_idle_ms,
                    start_id=self._claim_cursors[stream],
                    count=self._options.batch_size,
                )
                self._claim_cursors[stream] = next_cursor
                deliveries = [Delivery(stream, entry_id, fields or None) for entry_id, fields in claimed]
                if deliveries:
                    self.stats.reclaimed += len(deliveries)
                    self._log.info("worker.reclaimed", stream=stream, count=len(deliveries))
                    await self._count_deliveries(deliveries)
                    await self._process(deliveries)
                if next_cursor in ("0-0", "0"):
                    break

    async def _remove_idle_consumers(self) -> None:
        """Forget consumers of the group that stopped long ago and hold nothing (XGROUP DELCONSUMER).

        Only a consumer with no pending entry may go: deleting one would drop its pending entries from
        the group for good. Pending is re-checked right before the delete, and a consumer idle this long
        is not reading (a live one polls every CONSUMER_BLOCK_MS).
        """
        limit = self._options.delete_idle_consumer_ms
        for stream in self._streams:
            for info in await self._redis.xinfo_consumers(stream, self.group):
                name = info["name"]
                if name == self.consumer or info["pending"] or info["idle"] < limit:
                    continue
                held = await self._redis.xpending_range(
                    stream, self.group, min="-", max="+", count=1, consumername=name
                )
                if held:
                    continue
                await self._redis.xgroup_delconsumer(stream, self.group, name)
                self._log.info("worker.idle_consumer_removed", stream=stream, removed=name, idle_ms=info["idle"])

    async def _count_deliveries(self, deliveries: list[Delivery]) -> None:
        """Fill in how many times each entry was delivered (XPENDING knows; XREADGROUP does not say)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for d in deliveries:
                pipe.xpending_range(d.stream, self.group, min=d.entry_id, max=d.entry_id, count=1)
            results = await pipe.execute()
        for delivery, pending in zip(deliveries, results, strict=True):
            if pending:
                delivery.deliveries = int(pending[0]["times_delivered"])

    # -- applying ----------------------------------------------------------------------------------

    async def _process(self, deliveries: list[Delivery]) -> None:
        deliveries.sort(key=lambda d: entry_key(d.entry_id))  # approximate causal order across streams
        to_ack: list[Delivery] = []
        to_apply: list[tuple[Delivery, Event]] = []
        for delivery in deliveries:
            if delivery.fields is None:
                self._log.warning("worker.entry_trimmed", stream=delivery.stream, entry_id=delivery.entry_id)
                to_ack.append(delivery)
                self._count(delivery.stream, "skipped")
                continue
            try:
                event = Event.from_fields(delivery.fields)
            except MalformedEvent as exc:
                await self._settler.dead_letter(delivery, None, f"malformed envelope: {exc}")
                continue
            if delivery.deliveries > self._options.max_deliveries:
                # Delivered too often without an ack, typically a consumer crashing on it every time.
                reason = self.stats.last_errors.get(
                    delivery.key, "delivered repeatedly without being acknowledged (consumer crashed?)"
                )
                await self._settler.dead_letter(delivery, event, reason)
                continue
            replay_for = delivery.fields.get(REPLAY_FOR_FIELD)
            if replay_for and replay_for != self.group:
                to_ack.append(delivery)  # a dead letter put back for another group: not ours to apply
                self._count(delivery.stream, "skipped")
                continue
            if event.type not in self._handlers:
                self._log.warning(
                    "worker.no_handler",
                    event_type=event.type,
                    stream=delivery.stream,
                    event_id=event.id,
                    correlation_id=event.correlation_id,
                )
                to_ack.append(delivery)
                self._count(delivery.stream, "skipped")
                continue
            to_apply.append((delivery, event))

        failures = await self._applier.apply(to_apply) if to_apply else {}
        for delivery, _event in to_apply:
            if delivery.key not in failures:
                to_ack.append(delivery)
        await self._settler.ack(to_ack)

        for delivery, event in to_apply:
            error = failures.get(delivery.key)
            if error is None:
                self.stats.last_errors.pop(delivery.key, None)
                continue
            self.stats.failed += 1
            self.stats.last_errors[delivery.key] = error
            if delivery.deliveries >= self._options.max_deliveries:
                await self._settler.dead_letter(delivery, event, error)
            else:
                self._count(delivery.stream, "retried")
                self._schedule_retry(delivery.deliveries)

    # -- acknowledging -----------------------------------------------------------------------------

    def _count(self, stream: str, outcome: str, count: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.consumed(self.group, stream, outcome, count)

    def _schedule_retry(self, deliveries: int) -> None:
        delay_s = min(self._options.retry_delay_ms / 1000 * 2 ** max(deliveries - 1, 0), 30.0)
        retry_at = time.monotonic() + delay_s
        self._retry_at = retry_at if self._retry_at is None else min(self._retry_at, retry_at)

    async def _sleep(self, seconds: float) -> None:
        await sleep_unless(self._stopping, seconds)

    def _stats_fields(self) -> dict[str, Any]:
        s = self.stats
        return {
            "applied": s.applied,
            "duplicates": s.duplicates,
            "failed": s.failed,
            "dead_lettered": s.dead_lettered,
            "reclaimed": s.reclaimed,
        }
