"""Applying one batch of deliveries in PostgreSQL: the inbox and the handlers' effects in one transaction.

First together: one multi-row inbox insert, runs of same-type events handed to a bulk handler, no
savepoints, so a batch costs about one round trip per event, or per run. If a bulk form fails, the batch
is redone with single-event handlers, which name the culprit; when one event fails, the transaction
rolls back and the rest is redone one savepoint per event, so a failure undoes only its own event and a
failing handler runs once per delivery. A database that is away is not the events' fault: the batch is
retried as it is (`apply`) until it is back or the worker stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import structlog

from common.core.envelope import Event, correlation_id_var
from common.core.retry import Backoff
from common.core.tasks import sleep_unless
from common.messaging.handlers import AfterCommit, BulkHandler, Handler, after_commit_callbacks

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
class WorkerStats:
    applied: int = 0
    duplicates: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    groups_recreated: int = 0
    isolated_batches: int = 0  # batches redone one savepoint per event after a handler failed
    last_errors: dict[tuple[str, str], str] = field(default_factory=dict)  # (stream, entry id) → error


class CountOutcome(Protocol):
    """Count `count` entries of `stream` settled with `outcome` (the worker passes them to its metrics)."""

    def __call__(self, stream: str, outcome: str, count: int = 1) -> None: ...


class BatchApplier:
    """Applies the batches of one consumer worker (its pool, handler table and stats)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        handlers: Mapping[str, Handler],
        stats: WorkerStats,
        stopping: asyncio.Event,
        log: Any,
        count: CountOutcome,
    ) -> None:
        self._pool = pool
        self._handlers = handlers
        self.stats = stats
        self._stopping = stopping
        self._log = log
        self._count = count

    async def apply(self, batch: list[tuple[Delivery, Event]]) -> dict[tuple[str, str], str]:
        """Apply `batch`, retrying while the database is away; (stream, entry id) → error of what failed."""
        backoff = Backoff()
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
                delay = backoff.next_delay()
                self._log.warning(event_name, error=str(exc), retry_in_s=round(delay, 3))
                await self._sleep(delay)

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
            callbacks_token = after_commit_callbacks.set(callbacks)
            try:
                await handler.many([event for _, event in run], conn)
            except _TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:
                raise _BulkFailed(f"{handler.name}: {type(exc).__name__}: {exc}") from exc
            finally:
                after_commit_callbacks.reset(callbacks_token)
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
        callbacks_token = after_commit_callbacks.set(callbacks)
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
            after_commit_callbacks.reset(callbacks_token)
            correlation_id_var.reset(token)

    def _handler_failed(self, delivery: Delivery, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        self._log.warning("worker.handler_failed", error=error, deliveries=delivery.deliveries, exc_info=True)
        return error

    async def _sleep(self, seconds: float) -> None:
        await sleep_unless(self._stopping, seconds)
