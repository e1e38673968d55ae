"""A consumer group of the test's own, in the test process, beside the real services' groups.

`Audit` runs the real `common.messaging.consumer.ConsumerWorker` as group `faults_audit` on the system's Redis,
with its own database (the common migrations, so the same inbox, plus one table). Its handler writes
one row per event it applies and is deliberately not idempotent by itself: only the worker's inbox
stands between a redelivered event and a second row, so the row count per event id shows whether an
event was applied exactly once. A `bug` predicate makes the handler fail for chosen events (a handler
that always fails for one event), until the test "fixes" it by clearing the bug.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

import asyncpg
import redis.asyncio as aioredis

from common.core.envelope import Event
from common.db.migrations import ensure_database, migrate
from common.db.pool import create_pool
from common.messaging.consumer import ConsumerWorker, WorkerOptions
from common.messaging.handlers import Handler
from common.messaging.tables import COMMON_MIGRATIONS
from common.swarm.servers import database_url
from common.testing import drop_database

GROUP = "faults_audit"

_TABLE = """CREATE TABLE IF NOT EXISTS audit (
    seq        bigserial PRIMARY KEY,
    event_id   uuid NOT NULL,       -- no unique key on purpose: see the module docstring
    event_type text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


class AuditBug(RuntimeError):
    """What the audit handler raises for an event its `bug` matches."""


class Audit:
    def __init__(
        self,
        redis: aioredis.Redis,
        admin_dsn: str,
        database: str,
        event_types: Iterable[str],
        options: WorkerOptions,
    ) -> None:
        self.redis = redis
        self.admin_dsn = admin_dsn
        self.database = database
        self.event_types = list(event_types)
        self.options = options
        self.bug: Callable[[Event], bool] | None = None
        self.failures = 0
        self.pool: asyncpg.Pool | None = None
        self.worker: ConsumerWorker | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def dsn(self) -> str:
        return database_url(self.admin_dsn, self.database)

    async def start(self) -> Audit:
        await ensure_database(self.admin_dsn, self.database)
        await migrate(self.dsn, [("common", COMMON_MIGRATIONS)])
        self.pool = await create_pool(self.dsn, 1, 4)
        await self.pool.execute(_TABLE)
        handlers: dict[str, Handler] = dict.fromkeys(self.event_types, self._handle)
        self.worker = ConsumerWorker(
            redis=self.redis,
            pool=self.pool,
            group=GROUP,
            consumer=f"{GROUP}-1",
            handlers=handlers,
            options=self.options,
        )
        self._task = asyncio.create_task(self.worker.run(), name="audit-worker")
        return self

    async def stop(self) -> None:
        if self.worker is not None and self._task is not None:
            self.worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        if self.pool is not None:
            await self.pool.close()
        await drop_database(self.admin_dsn, self.database)

    async def _handle(self, event: Event, conn: asyncpg.Connection) -> None:
        if self.bug is not None and self.bug(event):
            self.failures += 1
            raise AuditBug(f"the audit handler cannot take event {event.id} yet")
        await conn.execute("INSERT INTO audit (event_id, event_type) VALUES ($1, $2)", event.id, event.type)

    async def rows_per_event(self) -> dict[str, int]:
        assert self.pool is not None
        rows = await self.pool.fetch("SELECT event_id::text, count(*)::int AS n FROM audit GROUP BY event_id")
        return {r["event_id"]: r["n"] for r in rows}

    def running(self) -> bool:
        return self._task is not None and not self._task.done()
