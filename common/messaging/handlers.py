"""The handler contract: what a service's event handler is, and what it may do besides its writes.

A handler is a plain async function of the decoded event and the connection of the batch's transaction
(`Handler`); the worker (`common.messaging.consumer`) calls it with exactly-once effect. A
`BulkHandler` also takes runs of same-type events in one call. `after_commit` lets a handler act
outside the database (wake a reader) only once its effects are committed.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import asyncpg

from common.core.envelope import Event

# A handler's effects go through `conn` (or `after_commit`) and nowhere else: a batch that fails is
# rolled back and redone, so a handler may run again for an event whose earlier run was undone.
Handler = Callable[[Event, asyncpg.Connection], Awaitable[None]]


AfterCommit = Callable[[], Awaitable[None]]


# The callbacks registered by the handler running now (see `after_commit`); None outside a handler.
after_commit_callbacks: contextvars.ContextVar[list[AfterCommit] | None] = contextvars.ContextVar(
    "after_commit", default=None
)


def after_commit(callback: AfterCommit) -> None:
    """From inside a handler: run `callback` once the batch holding this event has committed.

    For effects outside the database that must not be seen before the data is (waking a long-poll,
    pushing to a socket). Skipped if this event's savepoint rolls back or the batch never commits;
    best-effort (a crash right after the commit loses it), so never the only record of anything.
    """
    callbacks = after_commit_callbacks.get()
    if callbacks is None:
        raise RuntimeError("after_commit() is only available inside an event handler")
    callbacks.append(callback)


@contextlib.contextmanager
def collecting_after_commit() -> Iterator[list[AfterCommit]]:
    """Call handlers outside the worker (replays, tests): their after-commit callbacks land in the list,
    for the caller to run (or not) once its own transaction committed."""
    callbacks: list[AfterCommit] = []
    token = after_commit_callbacks.set(callbacks)
    try:
        yield callbacks
    finally:
        after_commit_callbacks.reset(token)


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
