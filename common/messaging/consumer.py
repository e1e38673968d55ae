"""The consumer-group worker: reads the streams a service follows and applies their events once.

One loop, no hidden concurrency, in this order of priority:
1. at start, and whenever a retry is due, re-read this consumer's own pending entries (id `0`);
2. every `claim_interval`, take over entries idle on other (dead) consumers with `XAUTOCLAIM`,
   following its cursor until the whole pending list was scanned;
3. otherwise, one blocking `XREADGROUP ... >` over all followed streams, in batches.

A batch is applied in one PostgreSQL transaction: the event ids go into the `inbox` table in the same
transaction as the handlers' effects, so a redelivered event is skipped. Runs of same-type events go
to a `BulkHandler` in one call. A failing handler rolls back only its own event: the batch is then
redone with a savepoint per event (see `_apply`). Entries are `XACK`ed only after the commit; a crash
anywhere before that leaves them pending, to be redelivered (and skipped if they had committed).

An entry whose handler fails stays pending and is retried with a growing delay; after
`max_deliveries` deliveries it goes to `events:dlq` with its error and is acknowledged, so the rest
of the stream keeps flowing. Infrastructure failures (database or Redis down) are not the event's
fault: the batch is retried as it is, without consuming deliveries, until the dependency is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.core.envelope import DEAD_LETTER_STREAM, Event, MalformedEvent, correlation_id_var, stream_for, utcnow

if TYPE_CHECKING:
    from common.service.metrics import Metrics

log = structlog.get_logger("worker")

# A handler's effects go through `conn` (or `after_commit`) and nowhere else: a batch that fails is
# rolled back and redone, so a handler may run again for an event whose earlier run was undone.
Handler = Callable[[Event, asyncpg.Connection], Awaitable[None]]

# A dead letter replayed for one group is re-added to its stream with this field naming the group;
# the other groups of the stream (which had applied it already) acknowledge it without applying it.
REPLAY_FOR_FIELD = "replay_for"
# Redis keeps no acknowledgement times; for `swarm trace` (common/streams.py) the worker records, per
# event, when each group acknowledged it (or dead-lettered it), in the pipeline that acknowledges.
ACK_RECORD_PREFIX = "trace:acked:"


def ack_record_key(event_id: str) -> str:
    """Hash of group → epoch ms of the group's last acknowledgement of this event."""
    return ACK_RECORD_PREFIX + event_id


# KEYS: ack record keys; ARGV: group, epoch ms, retention s. (Its keys span hash slots: on a Redis
# Cluster the records would have to be written per slot.)
_RECORD_ACKS_SCRIPT = """
for _, key in ipairs(KEYS) do
    redis.call('HSET', key, ARGV[1], ARGV[2])
    redis.call('EXPIRE', key, ARGV[3])
end
return #KEYS
"""


AfterCommit = Callable[[], Awaitable[None]]

# The callbacks registered by the handler running now (see `after_commit`); None outside a handler.
_after_commit_var: contextvars.ContextVar[list[AfterCommit] | None] = contextvars.ContextVar(
    "after_commit", default=None
)


def after_commit(callback: AfterCommit) -> None:
    """From inside a handler: run `callback` once the batch holding this event has committed.

    For effects outside the database that must not be seen before the data is (waking a long-poll,
    pushing to a socket). Skipped if this event's savepoint rolls back or the batch never commits;
    best-effort (a crash right after the commit loses it), so never the only record of anything.
    """
    callbacks = _after_commit_var.get()
    if callbacks is None:
        raise RuntimeError("after_commit() is only available inside an event handler")
    callbacks.append(callback)


@contextlib.contextmanager
def collecting_after_commit() -> Iterator[list[AfterCommit]]:
    """Call handlers outside the worker (replays, tests): their after-commit callbacks land in the list,
    for the caller to run (or not) once its own transaction committed."""
    callbacks: list[AfterCommit] = []
    token = _after_commit_var.set(callbacks)
    try:
        yield callbacks
    finally:
        _after_commit_var.reset(token)


# Errors that mean "the database is unreachable or the transaction lost a race", not "this event is bad".
_TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.AdminShutdownError,
)
_MAX_BACKOFF_S = 5.0


class _TransientFailure(Exception):
    """Applying a batch failed for reasons outside the events (wrapped for the retry loop)."""


class _EventFailed(Exception):
    """A handler failed while the batch was applied together; key None: the batch failed as a whole."""

    def __init__(self, key: tuple[str, str] | None, error: str) -> None:
        super().__init__(error)
        self.key = key
        self.error = error


class _BulkFailed(Exception):
    """A bulk handler failed on a run of events; which event is to blame is not known."""


@dataclass(frozen=True, slots=True)
class BulkHandler:
    """A handler that can also apply a run of consecutive events of its type in one go.

    `one` is the handler (and what calling this object does, so replays and tests need not care);
    `many` must have exactly the effect of `one` applied to each event in order, with fewer round
    trips (one `executemany`, one multi-row statement). It runs without a per-event correlation id,
    so it suits effects on the service's own tables (replica upserts), not handlers that publish.
    """

    one: Handler
    many: Callable[[Sequence[Event], asyncpg.Connection], Awaitable[None]]

    @property
    def name(self) -> str:
        return getattr(self.one, "__qualname__", repr(self.one))

    async def __call__(self, event: Event, conn: asyncpg.Connection) -> None:
        await self.one(event, conn)


@dataclass(slots=True)
class _BatchResult:
    applied: int = 0
    duplicates: int = 0
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    # (stream, outcome) → events, counted once the batch committed (one metrics call per pair, not per event)
    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    callbacks: list[tuple[Event, AfterCommit]] = field(default_factory=list)

    def applied_one(self, delivery: Delivery) -> None:
        self.applied += 1
        self.outcomes[delivery.stream, "applied"] += 1

    def duplicate(self, delivery: Delivery) -> None:
        self.duplicates += 1
        self.outcomes[delivery.stream, "duplicate"] += 1


@dataclass(slots=True)
class Delivery:
    stream: str
    entry_id: str
    fields: dict[str, str] | None  # None when the entry was trimmed while still pending
    deliveries: int = 1

    @property
    def key(self) -> tuple[str, str]:
        """Entry ids repeat across streams (the relay often adds to several in one millisecond)."""
        return self.stream, self.entry_id


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


@dataclass
class WorkerStats:
    applied: int = 0
    duplicates: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    groups_recreated: int = 0
    isolated_batches: int = 0  # batches redone one savepoint per event after a handler failed
    last_errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (stream, entry id) → error


def entry_key(ms_seq: str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as a sortable pair."""
    ms, _, seq = ms_seq.partition("-")
    return int(ms), int(seq or 0)


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
        metrics: Metrics | None = None,
    ) -> None:
        self._redis = redis
        self._pool = pool
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

    @property
    def streams(self) -> list[str]:
        """The streams this worker reads, one per event type it handles."""
        return list(self._streams)

    # -- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return. Nothing unprocessed gets acknowledged."""
        self._stopping.set()

    async def run(self) -> None:
        if not self._streams:
            return
        backoff = 0.1
        self.running = True
        try:
            while not self._stopping.is_set():
                try:
                    await self._step()
                    backoff = 0.1
                except ResponseError as exc:
                    if not str(exc).startswith("NOGROUP"):
                        raise
                    await self._recover_lost_group(exc)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    self._log.warning("worker.redis_unavailable", error=repr(exc), retry_in_s=backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF_S)
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
                await self._dead_letter(delivery, None, f"malformed envelope: {exc}")
                continue
            if delivery.deliveries > self._options.max_deliveries:
                # Delivered too often without an ack, typically a consumer crashing on it every time.
                reason = self.stats.last_errors.get(
                    delivery.key, "delivered repeatedly without being acknowledged (consumer crashed?)"
                )
                await self._dead_letter(delivery, event, reason)
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

        failures = await self._apply_with_retry(to_apply) if to_apply else {}
        for delivery, _event in to_apply:
            if delivery.key not in failures:
                to_ack.append(delivery)
        await self._ack(to_ack)

        for delivery, event in to_apply:
            error = failures.get(delivery.key)
            if error is None:
                self.stats.last_errors.pop(delivery.key, None)
                continue
            self.stats.failed += 1
            self.stats.last_errors[delivery.key] = error
            if delivery.deliveries >= self._options.max_deliveries:
                await self._dead_letter(delivery, event, error)
            else:
                self._count(delivery.stream, "retried")
                self._schedule_retry(delivery.deliveries)

    async def _apply_with_retry(self, batch: list[tuple[Delivery, Event]]) -> dict[tuple[str, str], str]:
        backoff = 0.1
        while True:
            try:
                return await self._apply(batch)
            except _TransientFailure as exc:
                if self._stopping.is_set():
                    # Give up on this batch without acking anything: it stays pending for next time.
                    return {d.key: f"not applied before shutdown: {exc}" for d, _ in batch}
                # A lost race between concurrent batches is routine; an unreachable database is not.
                conflict = isinstance(exc.__cause__, (asyncpg.SerializationError, asyncpg.DeadlockDetectedError))
                event_name = "worker.batch_conflict_retry" if conflict else "worker.database_unavailable"
                self._log.warning(event_name, error=str(exc), retry_in_s=backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _apply(self, batch: list[tuple[Delivery, Event]]) -> dict[tuple[str, str], str]:
        """Apply a batch in one transaction; return (stream, entry id) → error for the events that failed.

        First together: one multi-row inbox insert, runs of same-type events handed to a bulk handler,
        no savepoints, so a batch costs about one round trip per event, or per run. If a bulk form
        fails, the batch is redone with single-event handlers, which name the culprit; when one event
        fails, the transaction rolls back and the rest is redone one savepoint per event, so a failure
        still undoes only its own event and a failing handler runs once per delivery.
        """
        try:
            async with self._pool.acquire() as conn:
                bulk = True
                while True:
                    try:
                        result = await self._apply_together(conn, batch, bulk=bulk)
                        break
                    except _BulkFailed as exc:
                        self._log.info("worker.bulk_handler_failed", error=str(exc), retrying="one event at a time")
                        bulk = False
                    except _EventFailed as failed:
                        self.stats.isolated_batches += 1
                        rest = [(d, e) for d, e in batch if d.key != failed.key]
                        result = await self._apply_isolated(conn, rest)
                        if failed.key is not None:
                            result.failures[failed.key] = failed.error
                        break
        except _TRANSIENT_DB_ERRORS as exc:
            raise _TransientFailure(repr(exc)) from exc
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        for (stream, outcome), count in result.outcomes.items():
            self._count(stream, outcome, count)
        for event, callback in result.callbacks:
            # Bound like the handler that registered it, so its log lines say which event they follow.
            with structlog.contextvars.bound_contextvars(
                event_id=event.id, correlation_id=event.correlation_id, event_type=event.type
            ):
                try:
                    await callback()
                except Exception as exc:  # the data is committed; a lost wake-up only delays a reader
                    self._log.warning("worker.after_commit_failed", error=repr(exc))
        return result.failures

    async def _apply_together(
        self, conn: asyncpg.Connection, batch: list[tuple[Delivery, Event]], *, bulk: bool
    ) -> _BatchResult:
        result = _BatchResult()
        async with conn.transaction():
            try:
                fresh = {
                    str(row[0])
                    for row in await conn.fetch(
                        "INSERT INTO inbox (event_id, event_type) SELECT * FROM unnest($1::uuid[], $2::text[]) "
                        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                        [event.id for _, event in batch],
                        [event.type for _, event in batch],
                    )
                }
            except _TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:  # not one event's fault that we can name: isolate them all
                raise _EventFailed(None, f"{type(exc).__name__}: {exc}") from exc
            run: list[tuple[Delivery, Event]] = []
            for delivery, event in batch:
                event_id = event.id.lower()  # as PostgreSQL returns it (an id may come in capitals)
                if event_id not in fresh:  # applied before, or earlier in this very batch
                    result.duplicate(delivery)
                    continue
                fresh.discard(event_id)
                if run and run[-1][1].type != event.type:
                    await self._apply_run(conn, run, result, bulk=bulk)
                    run = []
                run.append((delivery, event))
            if run:
                await self._apply_run(conn, run, result, bulk=bulk)
        return result

    async def _apply_run(
        self, conn: asyncpg.Connection, run: list[tuple[Delivery, Event]], result: _BatchResult, *, bulk: bool
    ) -> None:
        """Apply consecutive fresh events of one type (inside the batch's transaction, no savepoint)."""
        handler = self._handlers[run[0][1].type]
        if bulk and len(run) > 1 and isinstance(handler, BulkHandler):
            callbacks: list[AfterCommit] = []
            callbacks_token = _after_commit_var.set(callbacks)
            try:
                await handler.many([event for _, event in run], conn)
            except _TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:
                raise _BulkFailed(f"{handler.name}: {type(exc).__name__}: {exc}") from exc
            finally:
                _after_commit_var.reset(callbacks_token)
            for delivery, _event in run:
                result.applied_one(delivery)
            result.callbacks += [(run[0][1], callback) for callback in callbacks]
            return
        for delivery, event in run:
            callbacks = []
            with self._handling(delivery, event, callbacks):
                try:
                    await handler(event, conn)
                except _TRANSIENT_DB_ERRORS:
                    raise
                except Exception as exc:
                    error = self._handler_failed(delivery, exc)
                    raise _EventFailed(delivery.key, error) from exc
            result.applied_one(delivery)
            result.callbacks += [(event, callback) for callback in callbacks]

    async def _apply_isolated(self, conn: asyncpg.Connection, batch: list[tuple[Delivery, Event]]) -> _BatchResult:
        """The careful path: one savepoint per event, so a failure rolls back only its own event."""
        result = _BatchResult()
        async with conn.transaction():
            for delivery, event in batch:
                callbacks: list[AfterCommit] = []
                with self._handling(delivery, event, callbacks):
                    try:
                        async with conn.transaction():  # a savepoint
                            first_time = await conn.fetchval(
                                "INSERT INTO inbox (event_id, event_type) VALUES ($1, $2) "
                                "ON CONFLICT (event_id) DO NOTHING RETURNING true",
                                event.id,
                                event.type,
                            )
                            if not first_time:
                                result.duplicate(delivery)
                                continue
                            await self._handlers[event.type](event, conn)
                    except _TRANSIENT_DB_ERRORS:
                        raise
                    except Exception as exc:
                        result.failures[delivery.key] = self._handler_failed(delivery, exc)
                        continue
                result.applied_one(delivery)
                result.callbacks += [(event, callback) for callback in callbacks]
        return result

    @contextlib.contextmanager
    def _handling(self, delivery: Delivery, event: Event, callbacks: list[AfterCommit]) -> Iterator[None]:
        """What a handler sees while it runs: the event's correlation id, log fields and after-commit list."""
        token = correlation_id_var.set(event.correlation_id)
        callbacks_token = _after_commit_var.set(callbacks)
        try:
            with structlog.contextvars.bound_contextvars(
                event_id=event.id,
                correlation_id=event.correlation_id,
                event_type=event.type,
                stream=delivery.stream,
                entry_id=delivery.entry_id,
            ):
                yield
        finally:
            _after_commit_var.reset(callbacks_token)
            correlation_id_var.reset(token)

    def _handler_failed(self, delivery: Delivery, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        self._log.warning("worker.handler_failed", error=error, deliveries=delivery.deliveries, exc_info=True)
        return error

    # -- acknowledging -----------------------------------------------------------------------------

    async def _ack(self, deliveries: list[Delivery]) -> None:
        if not deliveries:
            return
        by_stream: dict[str, list[str]] = {}
        for d in deliveries:
            by_stream.setdefault(d.stream, []).append(d.entry_id)
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            # A replay meant for another group is not ours: keep the time we really processed it.
            self._record_acks(
                pipe,
                [
                    d.fields.get("id", "")
                    for d in deliveries
                    if d.fields and d.fields.get(REPLAY_FOR_FIELD, self.group) == self.group
                ],
                now_ms,
            )
            await pipe.execute()

    def _record_acks(self, pipe: Any, event_ids: list[str], now_ms: int) -> None:
        retention = self._options.trace_retention_s
        keys = [ack_record_key(event_id) for event_id in event_ids if event_id]
        if keys and retention > 0:
            # One command for the whole batch: a HSET + EXPIRE pair per event was a fifth of the
            # consumer's CPU (redis-py packs and parses every command in Python).
            pipe.eval(_RECORD_ACKS_SCRIPT, len(keys), *keys, self.group, now_ms, retention)

    async def _dead_letter(self, delivery: Delivery, event: Event | None, error: str) -> None:
        """Move an entry to `events:dlq` (with why) and acknowledge it, atomically."""
        fields: dict[Any, Any] = {
            "stream": delivery.stream,
            "entry_id": delivery.entry_id,
            "group": self.group,
            "consumer": self.consumer,
            "error": error[:4000],
            "deliveries": str(delivery.deliveries),
            "failed_at": utcnow().isoformat().replace("+00:00", "Z"),
            "event_id": event.id if event else "",
            "event_type": event.type if event else "",
            "correlation_id": event.correlation_id if event else "",
            "envelope": orjson.dumps(delivery.fields or {}).decode(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(DEAD_LETTER_STREAM, fields)
            pipe.xack(delivery.stream, self.group, delivery.entry_id)
            event_id = fields["event_id"] or (delivery.fields or {}).get("id", "")
            self._record_acks(pipe, [event_id], int(time.time() * 1000))
            await pipe.execute()
        self.stats.dead_lettered += 1
        self._count(delivery.stream, "dead_lettered")
        self.stats.last_errors.pop(delivery.key, None)
        self._log.error(
            "worker.dead_lettered",
            stream=delivery.stream,
            entry_id=delivery.entry_id,
            event_id=fields["event_id"],
            correlation_id=fields["correlation_id"],
            deliveries=delivery.deliveries,
            error=error,
        )

    def _count(self, stream: str, outcome: str, count: int = 1) -> None:
        if self._metrics is not None:
            self._metrics.consumed(self.group, stream, outcome, count)

    def _schedule_retry(self, deliveries: int) -> None:
        delay_s = min(self._options.retry_delay_ms / 1000 * 2 ** max(deliveries - 1, 0), 30.0)
        retry_at = time.monotonic() + delay_s
        self._retry_at = retry_at if self._retry_at is None else min(self._retry_at, retry_at)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _stats_fields(self) -> dict[str, Any]:
        s = self.stats
        return {
            "applied": s.applied,
            "duplicates": s.duplicates,
            "failed": s.failed,
            "dead_lettered": s.dead_lettered,
            "reclaimed": s.reclaimed,
        }
