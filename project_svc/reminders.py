"""Due-date reminders: `card_due_soon` for the assignee of an open card due within the window.

project_svc owns the cards, so it produces the reminders, from a loop every replica runs (every
`settings.reminder_interval_s`). Exactly one notice per card and due date, however many replicas scan
at once: each batch locks the cards it takes (`FOR UPDATE SKIP LOCKED`, so replicas split the work
instead of waiting on each other), records the due date it reminds of in `cards.reminded_due_date`
and enqueues the notices, all in one transaction. A card whose due date moves is reminded again for
the new date; a card done or unassigned before the scan is not reminded at all.

A reminder is not a change of the card: its version stays, and no updateCard is published.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import asyncpg
import structlog

from common.core.envelope import utcnow
from common.core.tasks import sleep_unless
from common.messaging.outbox import enqueue
from common.service.runtime import Runtime
from project_svc import events, store

log = structlog.get_logger("project.reminders")

BATCH_SIZE = 500
# How long a shutdown waits for the batch in flight before cancelling it (its transaction rolls back).
STOP_GRACE_S = 5.0


class Reminders:
    def __init__(self, runtime: Runtime, *, batch_size: int = BATCH_SIZE) -> None:
        self._rt = runtime
        self._batch_size = batch_size
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.scans = 0  # completed scans, so tests (and a debugger) can tell the loop is alive

    async def run_once(self, now: datetime | None = None) -> int:
        """Remind of every card due in (`now`, `now` + window] not yet reminded of its due date, one
        transaction per batch; return how many reminders were enqueued. `now` must be timezone-aware."""
        now = now or utcnow()
        until = now + timedelta(seconds=self._rt.settings.reminder_window_s)
        total = 0
        while not self._stopping:
            sent = await self._batch(now, until)
            total += sent
            if sent < self._batch_size:  # the rest (if any) is locked by another replica, which takes it
                break
        self.scans += 1
        if total:
            log.info("reminders.sent", count=total)
        return total

    async def _batch(self, now: datetime, until: datetime) -> int:
        async with self._rt.db().acquire() as conn, conn.transaction():
            cards = await store.claim_cards_due(conn, now, until, self._batch_size)
            if not cards:
                return 0
            await store.mark_reminded(conn, [card["id"] for card in cards])
            await enqueue(conn, [notice for card in cards for notice in events.card_due_soon_notice(card)])
        return len(cards)

    async def run(self) -> None:
        """Scan now, then every `reminder_interval_s`, until `stop`."""
        interval_s = self._rt.settings.reminder_interval_s
        while not self._stopping:
            try:
                await self.run_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The database is away: nothing was marked, so the next scan reminds of the same cards.
                log.warning("reminders.scan_failed", error=repr(exc))
            except Exception:
                log.exception("reminders.scan_crashed")  # keep the loop alive: the next scan may succeed
            if not self._stopping:
                await sleep_unless(self._wakeup, interval_s)

    def stop(self) -> None:
        """End the loop after the batch in flight (at once if it is waiting for the next scan)."""
        self._stopping = True
        self._wakeup.set()
