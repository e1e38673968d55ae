"""Replica rebuild: a producer re-publishes a snapshot of its entities as ordinary versioned events.

A consumer whose database was wiped, or a brand-new consumer group, can catch up even after the
original events were trimmed: each entity comes again with its current state and version, which every
replica applies like any other event (a version it already has changes nothing). What a snapshot holds
is the producer's business, declared by its manifest (`snapshots`); this module pages through it,
one transaction per page, into the producer's outbox, so the running service's relay publishes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from common.core.envelope import Event, correlation_id_var
from common.db.pool import connect
from common.messaging.outbox import enqueue

# (connection, id after which to continue or None, page size) → (events of the next page of entities in
# id order, the last id of that page, or None when there is nothing more).
Snapshot = Callable[[asyncpg.Connection, str | None, int], Awaitable[tuple[list[Event], str | None]]]


@dataclass(frozen=True, slots=True)
class SnapshotSource:
    kind: str  # "users", "projects", ...
    service: str  # whose database and outbox
    snapshot: Snapshot


async def republish(dsn: str, snapshot: Snapshot, *, page_size: int = 500) -> tuple[int, str]:
    """Queue the whole snapshot in the producer's outbox; return (events queued, their correlation id)."""
    correlation_id = f"republish-{uuid.uuid4().hex[:12]}"
    token = correlation_id_var.set(correlation_id)  # one id for the whole run: `swarm trace` follows it
    conn = await connect(dsn)
    queued = 0
    try:
        after: str | None = None
        while True:
            async with conn.transaction():
                events, after = await snapshot(conn, after, page_size)
                await enqueue(conn, events)
            queued += len(events)
            if after is None:
                return queued, correlation_id
    finally:
        correlation_id_var.reset(token)
        await conn.close()
